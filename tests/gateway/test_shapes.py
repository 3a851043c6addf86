"""One registry of shapes (issue 20 item 2): every shape phalanb knows is one entry — the explicit markers that
identify it, its parser, the checks it supports, the source that defines it — identification never guesses, an
unknown shape is an exit-2 error naming the fields it found, and the README's table is the registry's."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from phalanb.cli import main
from phalanb.errors import UnsupportedError
from phalanb.gateway import REGISTRY, WRAPPERS, identify, shape_table
from phalanb.gateway.shapes import Marker
from phalanb.vllm.report import parse_report

ROOT = Path(__file__).resolve().parents[2]

#: Real documents (under the fixtures folder) and the registry entry each must be identified as.
CORPUS = {
    "reports/nanogpt-gemma-2026-03/attestation_report.json": "dstack-v1.1",
    "reports/neardirect-qwen-2026-04/attestation_report.json": "near-model-node",
    "reports/nearcloud-2026/attestation_report.json": "near-cloud-gateway",
    "reports/redpill-chutes-deepseek-2026-06/attestation_report.json": "chutes",
    "field/venice-qwen35-2026-06/attestation_report.json": "venice",
    "field/chutes-direct-glm5-2026-06/evidence.json": "chutes-evidence",
    "field/nanogpt-tinfoil-llama-2026-03/attestation_report.json": "tinfoil-v2",
    "field/nearai-gateway-gptoss-2026-04/attestation_report.json": "near-cloud-gateway",
    "field/venice-aci-gateway-glm52-2026-07/attestation_report.json": "reseller-aci-gateway",
    "field/phala-gateway-aci-aug-2026-08-28/aci_report_no_quote.json": "aci-aug",
    "aci/real/phala-gateway-aci1-report-2026-06-28.json": "aci-preview",
    "aci/verifier_ts_stub_report.json": "aci-aug",
    "field/dstack-sevsnp-2026/sev-snp-attestation.json": "sev-snp",
    "field/tinfoil-cloud-sevsnp-2026-06/tinfoil_attestation.json": "sev-snp",
    "field/tinfoil-direct-gemma4-2026-06/tinfoil_attestation.json": "tinfoil-v3",
}


def _doc(fixtures: Path, rel: str):
    path = fixtures / rel
    if not path.exists():
        pytest.skip(f"{rel} is not in this fixtures folder")
    return json.loads(path.read_text())


def test_every_entry_names_its_markers_parser_checks_and_source():
    names = [s.name for s in REGISTRY + WRAPPERS]
    assert len(names) == len(set(names)), "a shape is one entry"
    for s in REGISTRY + WRAPPERS:
        assert s.markers and all(isinstance(m, Marker) and m.text for m in s.markers), s.name
        assert s.source and s.title and s.protocol in ("aci", "vllm-proxy", "reseller", "session-evidence",
                                                        "refused"), s.name
        module, _, func = s.parser.rpartition(".")
        assert callable(getattr(__import__(module, fromlist=[func]), func)), s.name
        assert s.checks or not s.verifies, f"{s.name} verifies but names no checks"


def test_the_shapes_the_issue_names_are_all_entries():
    names = {s.name for s in REGISTRY + WRAPPERS}
    assert {"aci-preview", "aci-aug", "dstack-v1", "dstack-v1.1", "dstack-tls", "near-model-node",
            "near-cloud-gateway", "near-gateway-evidence", "chutes", "chutes-evidence", "tinfoil-v2", "tinfoil-v3",
            "venice", "reseller-aci-gateway", "nanogpt", "legacy", "sev-snp"} <= names


@pytest.mark.parametrize("rel,name", sorted(CORPUS.items()))
def test_each_real_document_is_identified_by_its_explicit_fields(fixtures, rel, name):
    assert identify(_doc(fixtures, rel)).name == name


@pytest.mark.parametrize("rel,name", sorted((r, n) for r, n in CORPUS.items()
                                            if n in {s.name for s in REGISTRY if s.protocol == "vllm-proxy"}
                                            or n == "venice"))
def test_the_registry_and_the_model_servers_parser_name_the_same_shape(fixtures, rel, name):
    assert parse_report(_doc(fixtures, rel)).shape == name


def test_the_legacy_boot_time_report_is_identified_by_its_quote_without_a_nonce(fixtures):
    d = fixtures / "reports/private-ml-sdk-2025-01"
    doc = {"intel_quote": (d / "intel_quote.hex").read_text().strip(),
           "nvidia_payload": (d / "nvidia_payload.json").read_text()}
    assert identify(doc).name == "legacy" == parse_report(doc).shape


def test_an_unknown_document_is_refused_naming_the_fields_it_has():
    with pytest.raises(UnsupportedError) as exc:
        identify({"quoteish": "x", "gpu_stuff": [], "hello": 1})
    assert "'quoteish'" in str(exc.value) and "'gpu_stuff'" in str(exc.value) and "'hello'" in str(exc.value)


def test_an_unknown_document_is_an_exit_2_error_of_phalanb_report(tmp_path, capsys):
    path = tmp_path / "mystery.json"
    path.write_text(json.dumps({"attestation_blob": "00", "provider_name": "x"}))
    assert main(["report", str(path)]) == 2
    err = capsys.readouterr().err
    assert "'attestation_blob'" in err and "'provider_name'" in err and "Traceback" not in err


def test_identification_uses_explicit_fields_never_values_that_look_right():
    # A document whose only content is a quote-like hex string under an unknown name is not guessed to be a report.
    with pytest.raises(UnsupportedError):
        identify({"blob": "04000200" + "00" * 100})
    # The reseller's markers alone do not make an ACI gateway report: the aci/1 version and legacy fields must be there.
    assert identify({"tee_provider": "phala", "request_nonce": "00" * 32, "intel_quote": "00"}).name == "venice"


def test_a_reseller_wrapper_is_identified_before_the_bare_gateway_report(fixtures):
    doc = _doc(fixtures, "field/venice-aci-gateway-glm52-2026-07/attestation_report.json")
    bare = {k: v for k, v in doc.items() if k not in ("verified", "nonce", "nonce_source", "tee_provider",
                                                      "tee_hardware", "model", "upstream_model", "server_verification",
                                                      "candidates_evaluated", "candidates_available")}
    assert identify(doc).name == "reseller-aci-gateway" and identify(bare).name == "aci-legacy-gateway"


def test_aci_v3_is_one_entry_of_the_registry(fixtures):
    """ACI v3 is one entry (markers, parser, checks, source): the upstream's own v3 report is named by it, and the
    older shapes keep theirs (a v3 keyset beside an August one is no shape at all: never guessed)."""
    doc = _doc(fixtures, "aci/v3/upstream/aci_report_fixture.json")
    shape = identify(doc)
    assert shape.name == "aci-v3" and shape.protocol == "aci" and "ACI-v3.md" in shape.source
    mixed = json.loads(json.dumps(doc))
    mixed["attestation"]["workload_keyset"] = {"not_after": 1}
    assert identify(mixed).name != "aci-v3"


def test_the_readme_shape_table_is_the_registrys():
    text = (ROOT / "README.md").read_text()
    m = re.search(r"<!-- shape-table:begin -->\n(.*?)<!-- shape-table:end -->", text, re.S)
    assert m, "README.md lost its generated shape table markers"
    assert m.group(1) == shape_table(), "regenerate the README's table: python -m phalanb.gateway.shapes"
