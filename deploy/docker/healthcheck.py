"""Container health check: exit 0 when /readyz answers 200, else 1 (standard library only).

The image's HEALTHCHECK runs it, so no curl is needed; HEALTHCHECK_URL overrides the address.
Readiness, not liveness: a container whose model or database is not ready reports unhealthy.
"""

from __future__ import annotations

import os
import sys
import urllib.error
import urllib.request

DEFAULT_URL = "http://127.0.0.1:8000/readyz"


def check(url: str, timeout: float = 4.0) -> tuple[bool, str]:
    """Whether `url` answers 200, and a one-line reason for the log."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return response.status == 200, f"{response.status} {response.read(300).decode()}"
    except urllib.error.HTTPError as error:
        # 503 carries a body saying which part (model, database) is not ready.
        return False, f"{error.code} {error.read(300).decode(errors='replace')}"
    except OSError as error:
        return False, f"unreachable: {error}"


def main() -> int:
    healthy, reason = check(os.environ.get("HEALTHCHECK_URL", DEFAULT_URL))
    print(reason)
    return 0 if healthy else 1


if __name__ == "__main__":
    sys.exit(main())
