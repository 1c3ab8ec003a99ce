"""The service serving a fused bundle: evidence names its source and carries context flags,
the record keeps them, and /v1/model describes the fusion."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.model.bundle_factory import add_fusion, build_tiny_bundle
from tests.service.service_testing import headers, running_service, wait_ready


@pytest.fixture(scope="module")
def fused_bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return add_fusion(build_tiny_bundle(tmp_path_factory.mktemp("fused") / "bundle"))


def test_evidence_names_its_source_and_a_negated_match_is_marked(
    make_settings, sqlite_url: str, fused_bundle: Path
) -> None:  # type: ignore[no-untyped-def]
    settings = make_settings(sqlite_url, bundle_dir=fused_bundle)
    with running_service(settings, ready=False) as service:
        # Alone, this test pays for loading the ICD-10-CM catalogue (other tests share it).
        wait_ready(service.http, timeout=240)
        text = "Paciente con apendicitis aguda. Niega fiebre."
        body = service.predict(text, top_k=5)
        by_code = {code["code"]: code for code in body["codes"]}
        appendicitis = by_code["K35.80"]["highlights"][0]
        assert by_code["K35.80"]["above_threshold"]  # a code only the lexicon knows
        assert appendicitis["source"] == "lexicon" and appendicitis["negated"] is False
        assert text[appendicitis["start"] : appendicitis["end"]] == "apendicitis aguda"
        fever = [h for h in by_code["R50.9"]["highlights"] if h["source"] == "lexicon"]
        assert [h["negated"] for h in fever] == [True]

        stored = service.http.get(
            f"/v1/predictions/{body['prediction_id']}", headers=headers("coder")
        )
        assert stored.status_code == 200, stored.text
        stored_codes = {code["code"]: code for code in stored.json()["codes"]}
        assert stored_codes["R50.9"]["highlights"] == by_code["R50.9"]["highlights"]

        model = service.http.get("/v1/model", headers=headers("admin")).json()
        assert model["network_codes"] == model["n_codes"] - 1
        assert set(model["fusion"]["files"]) == {"lexicon.json", "neighbours.npz", "combiner.onnx"}
