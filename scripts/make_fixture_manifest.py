"""Write phalanb/data/fixtures_manifest.json from a copy of the real fixtures (``../shared/fixtures`` by default).

For every file: its path in the fixture tree, size and sha256 (what a fetched copy is checked against), and its
provenance — the public repository and commit it comes from, the upstream folder or file where the notes name one,
and the note (``SOURCE.md`` / ``README.md`` of the fixture tree, itself in the manifest) that records the exact upstream
path and, for an *extracted* or *derived* file, the rule that made it. Notes and ``ground_truth.json`` are the
fixture compilers' own writing, marked ``"kind": "notes"``.

Run it again only when the fixture tree itself changes (its files are never edited):

    python scripts/make_fixture_manifest.py [FIXTURES_DIR]
"""

from __future__ import annotations

import hashlib
import json
import re
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
OUT = REPO / "phalanb" / "data" / "fixtures_manifest.json"

# Folders whose sources the fixture tree's README.md names in its tables (the SOURCE.md files name their own).
# prefix → (repository, commit as the notes give it, upstream folder or file)
README_SOURCES: dict[str, tuple[str, str, str]] = {
    "signatures/phala-docs-2024/": ("Phala-Network/phala-docs", "60383323fdd6", "confidential-ai/confidential-AI-API.md"),
    "signatures/phala-docs-2025/": ("Phala-Network/phala-docs", "7371a89a50db", "gpu-tee/inference-api.md"),
    "reports/private-ml-sdk-2025-01/": ("Phala-Network/private-ml-sdk", "fa11d12bb55f", "e2e/README.md"),
    "reports/private-ml-sdk-dstack-sample/": ("Phala-Network/private-ml-sdk", "fa11d12bb55f",
                                             "vllm-proxy/tests/app/sample_dstack_data.py"),
    "reports/": ("13rac1/teep", "46ee4b854641", "internal/integration/testdata/"),
    "tdx/dcap-qvl/": ("Phala-Network/dcap-qvl", "9bffe30b4da5", "sample/, tests/near/"),
    "tdx/go-tdx-guest/": ("google/go-tdx-guest", "91f9a52f36c7", "testing/testdata/"),
    "tdx/private-ml-sdk/": ("nearai/private-ml-sdk", "25c25025c556", "vllm-proxy/tests/app/sample_dstack_data.py"),
    "tdx/dstack/": ("Dstack-TEE/dstack", "312dc605ebaa", "dstack/verifier/fixtures/"),
    "tdx/intel-qvl/": ("intel/SGX-TDX-DCAP-QuoteVerificationLibrary", "7e5b2a13ca54",
                       "Src/AttestationApp/sampleData/tdx/"),
    "nvidia/nvtrust/": ("NVIDIA/nvtrust", "028173093d43",
                        "guest_tools/gpu_verifiers/local_gpu_verifier/src/verifier/{samples,certs}"),
    "nvidia/nvtrust_sdk_claims/": ("NVIDIA/nvtrust", "028173093d43", "guest_tools/attestation_sdk/tests/"),
    "nvidia/nvidia_attestation_sdk/": ("NVIDIA/attestation-sdk", "73c032ebff68",
                                       "nv-attest-sdk-cpp/unit-tests/testdata/, common-test-data/serialized_test_evidence/"),
    "nvidia/trustee/": ("confidential-containers/trustee", "78962cd416dc", "deps/verifier/test_data/nvidia/"),
    "nvidia/chutes_api/": ("rayonlabs/chutes-api", "7e17afca1e95", "nv-attest/tests/assets/evidence.json"),
    "nvidia/teep_venice_eat/": ("13rac1/teep", "46ee4b854641", "internal/attestation/testdata/nvidia_eat_hopper.json"),
    "aci/": ("Dstack-TEE/private-ai-gateway", "b6b5c1b", "spec/test-vectors.md, spec/e2ee-v2-test-vectors.md"),
}
SOURCE_LINE = re.compile(r"`?([\w.-]+/[\w.-]+)`?\s*@\s*`?([0-9a-f]{7,40})`?")
NOTES = re.compile(r"(^|/)(README\.md|SOURCE\.md|FIXTURES\.md|ground_truth\.json|check_vectors\.py)$")


def _note_for(root: Path, rel: Path) -> Path:
    """The nearest SOURCE.md (else README.md) above a file: where its upstream path and rule are written."""
    for parent in [rel.parent, *rel.parent.parents]:
        for name in ("SOURCE.md", "README.md"):
            if (root / parent / name).is_file():
                return parent / name
    return Path("README.md")


def _source(root: Path, rel: Path) -> dict[str, str]:
    posix = rel.as_posix()
    note = _note_for(root, rel)
    if NOTES.search(posix):
        return {"kind": "notes", "recorded_in": note.as_posix()}
    if note.name == "SOURCE.md":
        found = list(dict.fromkeys(SOURCE_LINE.findall((root / note).read_text(encoding="utf-8"))))
        if len(found) == 1:
            return {"kind": "third-party", "repository": found[0][0], "commit": found[0][1],
                    "recorded_in": note.as_posix()}
        if found:  # a note covering files of several sources names, per file, which one
            return {"kind": "third-party", "repositories": [f"{r}@{c}" for r, c in found],
                    "recorded_in": note.as_posix()}
    for prefix, (repo, commit, where) in README_SOURCES.items():
        if posix.startswith(prefix):
            return {"kind": "third-party", "repository": repo, "commit": commit, "upstream": where,
                    "recorded_in": note.as_posix()}
    raise SystemExit(f"no source is recorded for {posix}: add it to README_SOURCES")


def main(argv: list[str]) -> int:
    root = Path(argv[0]) if argv else REPO.parent / "shared" / "fixtures"
    files = []
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        rel = path.relative_to(root)
        data = path.read_bytes()
        files.append({"path": rel.as_posix(), "size": len(data), "sha256": hashlib.sha256(data).hexdigest(),
                      **_source(root, rel)})
    doc = {"about": "phalanb's real fixtures: each file's sha256 (checked on every fetch) and where it comes from. "
                    "Written by scripts/make_fixture_manifest.py; fetched by phalanb.fixtures.",
           "files": files}
    # one file per line: a reviewable diff when the fixture tree changes
    body = ",\n".join(json.dumps(f, ensure_ascii=False, sort_keys=True) for f in files)
    OUT.write_text('{"about": ' + json.dumps(doc["about"]) + ',\n"files": [\n' + body + "\n]}\n", encoding="utf-8")
    print(f"{len(files)} files, {sum(f['size'] for f in files)} bytes → {OUT.relative_to(REPO)}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
