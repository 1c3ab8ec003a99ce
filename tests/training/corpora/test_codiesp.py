"""CodiEsp reader and locator: a synthetic corpus tree, a synthetic zip, and the real corpus."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import pytest

from tests.corpus_location import REAL_CODIESP as FOUND_CODIESP
from tests.corpus_location import missing_codiesp_reason
from training.corpora import CorpusFormatError, CorpusLayoutError, load_corpus
from training.corpora.base import Document, EvidenceReference, EvidenceSpan
from training.corpora.codiesp import (
    CODIESP_ENV,
    fetch_codiesp,
    locate_codiesp,
    read_codiesp,
    read_codiesp_references,
    unpack_codiesp,
)

# Offsets below were counted by hand and are re-checked against the text in the tests.
FEVER_TEXT = "Varón con fiebre. Se administra estreptomicina por vía intramuscular.\n"
CHEST_TEXT = "Dolor torácico y disnea.\n"
HEALTHY_TEXT = "Niña sana. Control rutinario.\n"

SPANISH = {"S0001-1": FEVER_TEXT, "S0000-1": CHEST_TEXT, "S0002-1": HEALTHY_TEXT}
ENGLISH = {
    "S0001-1": "Male with fever.\n  Streptomycin is given intramuscularly.  \n\n",
    "S0000-1": "Chest pain and dyspnoea.\n",
    "S0002-1": "Healthy girl.\nRoutine check-up.\n",
}
D_ROWS = [
    ("S0001-1", "r50.9"),
    ("S0001-1", "z72.0"),
    ("S0001-1", "r50.9"),  # a repeated code is kept once
    ("S0000-1", "r07.9"),
    ("S0000-1", "r06.00"),
]
P_ROWS = [("S0001-1", "3e02329")]
X_ROWS = [
    ("S0001-1", "DIAGNOSTICO", "r50.9", "fiebre", "10 16"),
    ("S0001-1", "PROCEDIMIENTO", "3e02329", "estreptomicina intramuscular", "32 46;55 68"),
    # The real corpus has a few zero-width parts like this one; they are dropped.
    ("S0001-1", "DIAGNOSTICO", "z72.0", "Varón", "0 0;0 5"),
    ("S0000-1", "DIAGNOSTICO", "r07.9", "Dolor torácico", "0 14"),
    ("S0000-1", "DIAGNOSTICO", "r06.00", "disnea", "17 23"),
]


def write_split(root: Path, split: str, *, annotated: bool = True) -> None:
    for folder, texts in (("text_files", SPANISH), ("text_files_en", ENGLISH)):
        (root / split / folder).mkdir(parents=True)
        for doc_id, text in texts.items():
            (root / split / folder / f"{doc_id}.txt").write_text(text, encoding="utf-8")
    if annotated:
        for suffix, rows in (("D", D_ROWS), ("P", P_ROWS), ("X", X_ROWS)):
            lines = "".join("\t".join(row) + "\n" for row in rows)
            (root / split / f"{split}{suffix}.tsv").write_text(lines, encoding="utf-8")


@pytest.fixture
def codiesp_root(tmp_path: Path) -> Path:
    root = tmp_path / "codiesp"
    for split in ("train", "dev", "test"):
        write_split(root, split)
    write_split(root, "background", annotated=False)
    return root


def test_offsets_in_fixture_are_right() -> None:
    assert FEVER_TEXT[10:16] == "fiebre"
    assert FEVER_TEXT[32:46] == "estreptomicina"
    assert FEVER_TEXT[55:68] == "intramuscular"
    assert CHEST_TEXT[0:14] == "Dolor torácico"
    assert CHEST_TEXT[17:23] == "disnea"


@pytest.mark.parametrize("split", ["train", "dev", "test"])
def test_spanish_split_with_codes_and_spans(codiesp_root: Path, split: str) -> None:
    documents = read_codiesp(codiesp_root, split)

    assert [document.id for document in documents] == ["S0000-1", "S0001-1", "S0002-1"]
    chest, fever, healthy = documents
    assert chest == Document(
        id="S0000-1",
        text="Dolor torácico y disnea.",
        codes=("R07.9", "R06.00"),
        spans=(EvidenceSpan("R07.9", 0, 14), EvidenceSpan("R06.00", 17, 23)),
    )
    assert fever.text == FEVER_TEXT.rstrip()
    assert fever.codes == ("R50.9", "Z72.0", "3E02329")
    # The discontinuous mention becomes one span per part, the parts tied by `part_of`; the
    # zero-width part is gone.
    assert [(span.code, span.start, span.end) for span in fever.spans] == [
        ("R50.9", 10, 16),
        ("3E02329", 32, 46),
        ("3E02329", 55, 68),
        ("Z72.0", 0, 5),
    ]
    parts = [span.part_of for span in fever.spans]
    assert parts[0] is None and parts[3] is None
    assert parts[1] is not None and parts[1] == parts[2]
    # A document without any code is still yielded.
    assert healthy == Document(id="S0002-1", text="Niña sana. Control rutinario.", codes=())


def test_code_set_selects_diagnoses_or_procedures(codiesp_root: Path) -> None:
    diagnoses = {doc.id: doc for doc in read_codiesp(codiesp_root, "train", codes="D")}
    procedures = {doc.id: doc for doc in read_codiesp(codiesp_root, "train", codes="P")}

    assert diagnoses["S0001-1"].codes == ("R50.9", "Z72.0")
    assert {span.code for span in diagnoses["S0001-1"].spans} == {"R50.9", "Z72.0"}
    assert procedures["S0001-1"].codes == ("3E02329",)
    assert procedures["S0001-1"].spans == (
        EvidenceSpan("3E02329", 32, 46, part_of=0),
        EvidenceSpan("3E02329", 55, 68, part_of=0),
    )
    assert procedures["S0000-1"].codes == ()
    assert procedures["S0000-1"].spans == ()


def test_english_joins_sentences_and_has_no_spans(codiesp_root: Path) -> None:
    documents = {doc.id: doc for doc in read_codiesp(codiesp_root, "test", lang="en")}

    fever = documents["S0001-1"]
    assert fever.text == "Male with fever. Streptomycin is given intramuscularly."
    assert fever.codes == ("R50.9", "Z72.0", "3E02329")
    assert fever.spans == ()
    assert documents["S0002-1"].text == "Healthy girl. Routine check-up."


def test_english_does_not_need_the_x_file(codiesp_root: Path) -> None:
    (codiesp_root / "dev" / "devX.tsv").unlink()

    assert len(read_codiesp(codiesp_root, "dev", lang="en")) == 3
    with pytest.raises(CorpusLayoutError, match=r"devX\.tsv"):
        read_codiesp(codiesp_root, "dev", lang="es")


def test_background_is_text_only(codiesp_root: Path) -> None:
    documents = read_codiesp(codiesp_root, "background")

    assert [doc.id for doc in documents] == ["S0000-1", "S0001-1", "S0002-1"]
    assert all(doc.codes == () and doc.spans == () for doc in documents)


def test_missing_split_folder_names_path_and_layout(codiesp_root: Path) -> None:
    with pytest.raises(CorpusLayoutError) as caught:
        read_codiesp(codiesp_root, "validation")

    message = str(caught.value)
    assert str(codiesp_root / "validation") in message
    assert "text_files" in message
    assert "'train'" in message  # lists the split folders that do exist


def test_missing_annotation_file_is_named(codiesp_root: Path) -> None:
    (codiesp_root / "train" / "trainP.tsv").unlink()

    assert read_codiesp(codiesp_root, "train", codes="D")[1].codes == ("R50.9", "Z72.0")
    with pytest.raises(CorpusLayoutError, match=r"trainP\.tsv"):
        read_codiesp(codiesp_root, "train", codes="DP")


def test_missing_text_folder_is_named(codiesp_root: Path) -> None:
    for path in (codiesp_root / "dev" / "text_files_en").iterdir():
        path.unlink()
    (codiesp_root / "dev" / "text_files_en").rmdir()

    with pytest.raises(CorpusLayoutError, match="text_files_en"):
        read_codiesp(codiesp_root, "dev", lang="en")


def test_span_outside_text_is_an_error(codiesp_root: Path) -> None:
    with (codiesp_root / "train" / "trainX.tsv").open("a", encoding="utf-8") as stream:
        stream.write("S0000-1\tDIAGNOSTICO\tr07.9\tdolor\t20 99\n")

    with pytest.raises(CorpusFormatError, match=r"trainX.tsv line 6: span 20-99 lies outside"):
        read_codiesp(codiesp_root, "train")


def test_annotation_for_unknown_document_is_an_error(codiesp_root: Path) -> None:
    with (codiesp_root / "train" / "trainD.tsv").open("a", encoding="utf-8") as stream:
        stream.write("S9999-1\tr50.9\n")

    with pytest.raises(CorpusFormatError, match="S9999-1"):
        read_codiesp(codiesp_root, "train")


def test_evidence_for_a_code_the_document_lacks_is_dropped_with_a_warning(
    codiesp_root: Path,
) -> None:
    with (codiesp_root / "train" / "trainX.tsv").open("a", encoding="utf-8") as stream:
        stream.write("S0000-1\tDIAGNOSTICO\tr99\tdisnea\t17 23\n")

    with pytest.warns(UserWarning, match=r"line 6: code R99 is not in S0000-1's D/P codes"):
        chest = read_codiesp(codiesp_root, "train")[0]
    assert chest.codes == ("R07.9", "R06.00")
    assert [span.code for span in chest.spans] == ["R07.9", "R06.00"]


def test_references_keep_each_x_row_whole(codiesp_root: Path) -> None:
    references = read_codiesp_references(codiesp_root, "dev")

    assert references == [
        EvidenceReference("S0001-1", "D", "R50.9", ((10, 16),), "fiebre"),
        EvidenceReference(
            "S0001-1", "P", "3E02329", ((32, 46), (55, 68)), "estreptomicina intramuscular"
        ),
        # The zero-width part is dropped; the rest of the row stays.
        EvidenceReference("S0001-1", "D", "Z72.0", ((0, 5),), "Varón"),
        EvidenceReference("S0000-1", "D", "R07.9", ((0, 14),), "Dolor torácico"),
        EvidenceReference("S0000-1", "D", "R06.00", ((17, 23),), "disnea"),
    ]
    # A discontinuous reference is bounded by its earliest start and latest end.
    assert (references[1].start, references[1].end) == (32, 68)
    assert [ref.code for ref in read_codiesp_references(codiesp_root, "dev", codes="P")] == [
        "3E02329"
    ]
    assert len(read_codiesp_references(codiesp_root, "dev", codes="D")) == 4


def test_reference_parts_out_of_text_order_are_bounded_by_min_and_max() -> None:
    # 33 dev rows list their parts out of text order, e.g. "2654 2674;691 706".
    reference = EvidenceReference("S1", "P", "BT02", ((2654, 2674), (691, 706)), "estudio riñón")
    assert (reference.start, reference.end) == (691, 2674)


def test_references_refuse_bad_input(codiesp_root: Path) -> None:
    with pytest.raises(ValueError, match="no evidence annotations"):
        read_codiesp_references(codiesp_root, "background")
    with pytest.raises(ValueError, match="codes"):
        read_codiesp_references(codiesp_root, "dev", codes="X")  # type: ignore[arg-type]
    with (codiesp_root / "train" / "trainX.tsv").open("a", encoding="utf-8") as stream:
        stream.write("S0000-1\tDIAGNOSTICO\tr07.9\tdolor\t20 99\n")
    with pytest.raises(CorpusFormatError, match=r"trainX.tsv line 6: span 20-99 lies outside"):
        read_codiesp_references(codiesp_root, "train")


def test_bad_options_are_refused(codiesp_root: Path) -> None:
    with pytest.raises(ValueError, match="lang"):
        read_codiesp(codiesp_root, "train", lang="fr")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="codes"):
        read_codiesp(codiesp_root, "train", codes="X")  # type: ignore[arg-type]


def test_registry_reads_codiesp(codiesp_root: Path) -> None:
    assert load_corpus("codiesp", codiesp_root, "dev", lang="en") == read_codiesp(
        codiesp_root, "dev", lang="en"
    )


# --- locating, unpacking, downloading ----------------------------------------------------------


def test_locate_validates_a_given_path(codiesp_root: Path, tmp_path: Path) -> None:
    assert locate_codiesp(codiesp_root, download=False) == codiesp_root
    # The layout may sit below the given folder, as it does in the unpacked zip.
    assert locate_codiesp(codiesp_root.parent, download=False) == codiesp_root
    (tmp_path / "empty").mkdir()
    with pytest.raises(CorpusLayoutError, match="not a CodiEsp folder"):
        locate_codiesp(tmp_path / "empty")


def test_locate_searches_env_then_shared_then_cache(
    codiesp_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    workdir = tmp_path / "work" / "main"
    workdir.mkdir(parents=True)
    monkeypatch.chdir(workdir)
    monkeypatch.delenv(CODIESP_ENV, raising=False)
    cache = tmp_path / "cache"
    cache.mkdir()

    with pytest.raises(CorpusLayoutError, match=CODIESP_ENV):
        locate_codiesp(cache_dir=cache, download=False)

    cached = cache / "final_dataset_v4_to_publish"
    write_split(cached, "train")
    assert locate_codiesp(cache_dir=cache, download=False) == cached

    shared = tmp_path / "work" / "shared" / "codiesp"
    write_split(shared, "dev")
    assert locate_codiesp(cache_dir=cache, download=False) == shared

    monkeypatch.setenv(CODIESP_ENV, str(codiesp_root))
    assert locate_codiesp(cache_dir=cache, download=False) == codiesp_root


def build_zip(corpus: Path, *, top: str = "final_dataset_v4_to_publish") -> bytes:
    """The published zip's shape: one top folder, plus the __MACOSX tree macOS zips carry."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("__MACOSX/final_dataset_v4_to_publish/._train", b"\x00")
        for path in sorted(corpus.rglob("*")):
            if path.is_file():
                archive.write(path, f"{top}/{path.relative_to(corpus).as_posix()}")
    return buffer.getvalue()


def test_unpack_finds_the_layout_inside_the_zip(codiesp_root: Path, tmp_path: Path) -> None:
    zip_path = tmp_path / "codiesp.zip"
    zip_path.write_bytes(build_zip(codiesp_root))

    root = unpack_codiesp(zip_path, tmp_path / "cache")

    assert root == tmp_path / "cache" / "final_dataset_v4_to_publish"
    assert read_codiesp(root, "train") == read_codiesp(codiesp_root, "train")


def test_unpack_rejects_a_zip_without_the_layout(tmp_path: Path) -> None:
    zip_path = tmp_path / "other.zip"
    with zipfile.ZipFile(zip_path, "w") as archive:
        archive.writestr("something/else.txt", "not a corpus")
    with pytest.raises(CorpusLayoutError, match="holds no CodiEsp layout"):
        unpack_codiesp(zip_path, tmp_path / "out")

    broken = tmp_path / "broken.zip"
    broken.write_bytes(b"this is not a zip")
    with pytest.raises(CorpusFormatError, match="not a valid zip"):
        unpack_codiesp(broken, tmp_path / "out")


class FakeResponse(io.BytesIO):
    def __init__(self, payload: bytes) -> None:
        super().__init__(payload)
        self.headers = {"Content-Length": str(len(payload))}


def test_fetch_downloads_unpacks_and_cleans_up(
    codiesp_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # keep a real ../shared/codiesp out of the search
    monkeypatch.delenv(CODIESP_ENV, raising=False)
    payload = build_zip(codiesp_root)
    requested: list[str] = []

    def opener(url: str) -> FakeResponse:
        requested.append(url)
        return FakeResponse(payload)

    cache = tmp_path / "cache"
    root = fetch_codiesp(cache, url="https://example.invalid/codiesp.zip", opener=opener)

    assert requested == ["https://example.invalid/codiesp.zip"]
    assert root == cache / "final_dataset_v4_to_publish"
    assert [path.name for path in cache.glob("*.zip*")] == []
    assert len(read_codiesp(root, "dev")) == 3
    # Once in the cache, locating needs no download.
    assert locate_codiesp(cache_dir=cache, download=False) == root


# --- the real corpus ---------------------------------------------------------------------------

REAL_CODIESP = FOUND_CODIESP or Path("codiesp-not-found")


def x_rows(split: str) -> list[list[str]]:
    lines = (REAL_CODIESP / split / f"{split}X.tsv").read_text(encoding="utf-8").splitlines()
    return [line.split("\t") for line in lines if line.strip()]


@pytest.mark.corpus
@pytest.mark.parametrize(("split", "size"), [("train", 500), ("dev", 250)])
def test_real_codiesp(split: str, size: int) -> None:
    if FOUND_CODIESP is None:
        pytest.skip(missing_codiesp_reason())
    documents = {doc.id: doc for doc in read_codiesp(REAL_CODIESP, split)}
    english = read_codiesp(REAL_CODIESP, split, lang="en")

    assert len(documents) == size
    assert [doc.id for doc in english] == sorted(documents)
    assert all(doc.spans == () and "\n" not in doc.text for doc in english)
    for doc in documents.values():
        assert doc.codes and len(set(doc.codes)) == len(doc.codes)
        assert all(0 <= span.start < span.end <= len(doc.text) for span in doc.spans)
        assert {span.code for span in doc.spans} <= set(doc.codes)

    # Each X row's parts, joined by a space, should read as its evidence text. In the shipped
    # data a handful do not: one offset is off by one and some parts keep trailing punctuation.
    mismatches = 0
    rows = x_rows(split)
    for doc_id, _, _, evidence, offsets in rows:
        text = documents[doc_id].text
        parts = [tuple(map(int, part.split())) for part in offsets.split(";")]
        if " ".join(text[start:end] for start, end in parts if start < end) != evidence:
            mismatches += 1
    rate = mismatches / len(rows)
    print(f"CodiEsp {split}: {mismatches} of {len(rows)} evidence texts differ ({rate:.2%})")
    assert rate < 0.01

    # Every X row with a non-empty part is a reference, within its note's text.
    references = read_codiesp_references(REAL_CODIESP, split)
    assert len(references) == len(rows)
    assert all(0 <= ref.start < ref.end <= len(documents[ref.note_id].text) for ref in references)
    assert {ref.label for ref in references} == {"D", "P"}
