"""Write phalanb/data/fixtures_manifest.json from a copy of the real fixtures (``../shared/fixtures`` by default).

For every file of the fixture tree: its path, size and sha256 (what a fetched or re-derived copy is checked against)
and its *origin*, exactly as far as the tree's notes (``README.md`` / ``SOURCE.md``) record it:

- ``upstream``: published byte-exact at ``repository`` @ ``commit``, path ``upstream_path`` — fetched from there;
- ``derived``: made from other files of the tree (``inputs``) by ``derivation``, a function of
  :mod:`phalanb.fixtures` re-run on fetch; ``derivation: null`` where the notes give a rule phalanb does not
  implement (``upstream_inputs`` then says what it was made from);
- ``unknown``: the notes name a repository (and usually a commit and a folder) but not everything a fetch needs —
  ``unrecorded`` lists what is missing; never guessed, so such a file cannot be fetched;
- ``project``: written by the people who compiled the fixtures (the notes themselves, expected values computed
  for phalanb): no public upstream, so it cannot be fetched either.

The rules below are transcribed by hand from the notes (each names the note it follows); a commit the notes give
abbreviated is written in full only where another note gives the full form of the same repository's commit.
Run it again only when the fixture tree changes (its files are never edited):

    python scripts/make_fixture_manifest.py [FIXTURES_DIR]
"""

from __future__ import annotations

import fnmatch
import hashlib
import json
import re
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
OUT = REPO / "phalanb" / "data" / "fixtures_manifest.json"
sys.path.insert(0, str(REPO))

from phalanb.fixtures import DERIVATIONS  # noqa: E402  (the functions a derived entry names must exist)

TEEP, PAG, NVSDK = "13rac1/teep", "Dstack-TEE/private-ai-gateway", "NVIDIA/attestation-sdk"
TEEP_0630 = "46ee4b854641d3932c880ae5ac66d5f2d2a26791"
TEEP_0405 = "e0415d20cb9c1c087a5a64b1bba9917f6cea191d"
NVSDK_C = "73c032ebff680ca6d2ba06f4006b511491b71ce9"
GNV = ("google/go-nvattest-tools", "89e19780366048c3b106c9ed2e1654d189c741a3")
TESTDATA = "internal/integration/testdata/"
ROOT_CRL = (TEEP, TEEP_0405, TESTDATA + "venice_20260322_162635/venice_pcs_rootcrl.der")


def up(repo: str, commit: str, path: str) -> dict:
    return {"origin": "upstream", "repository": repo, "commit": commit, "upstream_path": path}


def unknown(repo: str | None, commit: str | None, folder: str | None, *missing: str) -> dict:
    d = {"origin": "unknown", "unrecorded": list(missing or ["the upstream path of this file"])}
    if repo:
        d["repository"] = repo
    if commit:
        d["commit"] = commit
    if folder:
        d["upstream_folder"] = folder
    return d


def derived(function: str, **args) -> dict:
    assert function in DERIVATIONS, function
    inputs = [v.split("#")[0] for k, v in args.items() if k != "member"]
    return {"origin": "derived", "derivation": {"function": function, "args": args}, "inputs": inputs}


def extracted(repo: str, commit: str | None, path: str | None) -> dict:
    """Cut out of an upstream file by a rule written in prose that phalanb does not implement."""
    src = {"repository": repo, **({"commit": commit} if commit else {}), **({"path": path} if path else {})}
    src = dict(src)  # each entry its own copy: commits are expanded in place
    return {"origin": "derived", "derivation": None, "upstream_inputs": [src],
            "unrecorded": ["a function in phalanb that re-derives it from its upstream input"]}


def project() -> dict:
    """Written by the people who compiled the fixtures: said in so many words, since a fetch must refuse it."""
    return {"origin": "project", "public_source": None,
            "why": "written by the fixtures' compilers (notes, expected values computed for phalanb)"}


def teep(commit: str, folder: str):
    return lambda name: up(TEEP, commit, TESTDATA + folder + name)


def dcap(prefix: str, tcb: str, qe: str, crl: str, root: str, *, tcb_chain: str, qe_chain: str,
         crl_chain: str) -> dict:
    """collateral.json: dcap-qvl's JSON built from Intel PCS answers (the rule of field/README.md)."""
    p = lambda x: x if x.startswith(F) else prefix + x  # noqa: E731  (a file borrowed from another folder)
    return derived("dcap_collateral", tcb_info=p(tcb), tcb_info_chain=p(tcb_chain), qe_identity=p(qe),
                   qe_identity_chain=p(qe_chain), pck_crl=p(crl), pck_crl_chain=p(crl_chain), root_ca_crl=p(root))


F = "field/"
CH, TD, VQ, VA = (F + "chutes-direct-glm5-2026-06/", F + "tinfoil-direct-gemma4-2026-06/",
                  F + "venice-qwen35-2026-06/", F + "venice-aci-gateway-glm52-2026-07/")
TV, ND, TC = F + "tinfoil-verifier-tdx-v2/", F + "neardirect-qwen-2026-03/", F + "tinfoil-cloud-sevsnp-2026-06/"
chutes = teep(TEEP_0630, "chutes_zai-org_glm-5-tee_20260629_020725/")
tdirect = teep(TEEP_0630, "tinfoil_v3_direct_gemma4-31b_20260629_021304/")
tcloud = teep(TEEP_0630, "tinfoil_v3_cloud_llama3-3-70b_20260629_021249/")
vqwen = teep(TEEP_0630, "venice_e2ee-qwen3-5-122b-a10b_20260610_014707/")
vaci = teep("6ab0816dde497e7bff052777545364196295b9f5", "venice_aci_e2ee-glm-5-2-p_20260713_164058/")
ndirect = teep(TEEP_0405, "neardirect_20260322_012908/")
nano = teep(TEEP_0630, "nanogpt_20260325_225022/")
NANO_MODELS = {"nanogpt-chutes-deepseek-2026-03": "deepseek-v3.2", "nanogpt-gateway-glm5-2026-03": "glm-5",
               "nanogpt-tinfoil-llama-2026-03": "llama3-3-70b"}
ELIDED = "the upstream file name (the note abbreviates it, e.g. `responses/0002…`)"


def _rules() -> list[tuple[str, object]]:
    """(glob, entry or function of the path) — the first that matches a file decides. Each block follows the note
    named in its comment."""
    r: list[tuple[str, object]] = [
        # the compilers' own writing and the expected values they computed for phalanb
        ("*README.md", project()), ("*SOURCE.md", project()), ("tdx/ground_truth.json", project()),
        ("aci/check_vectors.py", project()), ("aci/v3/check_vectors.py", project()),
        ("aci/test_vectors.json", project()), ("aci/v3/test_vectors.json", project()),
        ("nvidia/rims/index.json", project()),
        # aci/README.md, aci/real/SOURCE.md, aci/real/sessions/SOURCE.md, aci/v3/upstream/SOURCE.md
        ("aci/verifier_ts_stub_report.json", unknown(PAG, None, None, "the commit", "the upstream path")),
        ("aci/real/phala-gateway-aci1-report-2026-06-28.json",
         up("looprig/llm", "80be2641656da124f8662bcab8f890565c38a4b1", "aci/testdata/report_aci1.json")),
        ("aci/v3/upstream/aci_report_fixture.json",
         up(PAG, "2b412cf6ba8b4a8ddb536cbb0e90fee169b3e297", "tests/fixtures/aci_report_fixture.json")),
    ]
    for name, commit in (("near-ai-a.json", "68d0bf5305865900140bd3d5c1d90e1c134ad6f5"),
                         ("phala-direct-a.json", "68d0bf5305865900140bd3d5c1d90e1c134ad6f5"),
                         ("tinfoil.json", "68d0bf5305865900140bd3d5c1d90e1c134ad6f5"),
                         ("phala-direct-b.json", "47e4dc8218ffe69d086d5cfa935b3be6c716e90f"),
                         ("chutes-embed.json", "cb4e0a75908ab3ddc298a828a17dd89d016ca935")):
        r.append((f"aci/real/sessions/{name}", up(PAG, commit, f"tests/fixtures/sessions/{name}")))

    # field/chutes-direct-glm5-2026-06/SOURCE.md
    r += [(CH + "capture/teep_report.txt", chutes("report.txt")),
          (CH + "quote_instance0.bin", derived("base64_member", source=CH + "evidence.json", member="evidence.0.quote")),
          (CH + "gpu_evidence_instance0.json", derived("json_member", source=CH + "evidence.json",
                                                       member="evidence.0.gpu_evidence")),
          (CH + "client_nonce.txt", derived("text_member", source=CH + "capture/manifest.json", member="nonce_hex")),
          (CH + "nras_request.json", unknown(TEEP, TEEP_0630, None, "the capture file it was base64-decoded from")),
          (CH + "collateral.json", dcap(CH, "pcs/tcb.body", "pcs/qe_identity.body", TD + "pcs/pckcrl.der",
                                        TD + "pcs/rootcacrl_2026-02-26.der", tcb_chain="pcs/tcb.meta.json#Tcb-Info-Issuer-Chain",
                                        qe_chain="pcs/qe_identity.meta.json#Sgx-Enclave-Identity-Issuer-Chain",
                                        crl_chain=TD + "pcs/pckcrl.meta.json#Sgx-Pck-Crl-Issuer-Chain")),
          (CH + "*", unknown(TEEP, TEEP_0630, TESTDATA + "chutes_zai-org_glm-5-tee_20260629_020725/", ELIDED))]
    # field/dstack-sevsnp-2026/SOURCE.md
    r.append((F + "dstack-sevsnp-2026/sev-snp-attestation.json",
              up("Dstack-TEE/dstack", "312dc605ebaaf93372534ffb135ea011533d28e9",
                 "dstack/verifier/fixtures/sev-snp-attestation.json")))
    # field/nanogpt-*/SOURCE.md
    for folder, model in NANO_MODELS.items():
        r += [(f"{F}{folder}/attestation_report.json", nano(f"{model}_attestation.json")),
              (f"{F}{folder}/client_nonce.txt", nano(f"{model}_nonce.txt")),
              (f"{F}{folder}/capture/headers.json", nano(f"{model}_headers.json"))]
    # field/near-docs-sig-*/SOURCE.md: cut out of the documentation page by prose rules
    for folder, commit in (("near-docs-sig-deepseek-2025-12", "7927a68637f72fd240adbfcbeb56bad56092be11"),
                           ("near-docs-sig-llama-2025-12", "577787f3048ea293447d424a7536d1f52fdcfb2e"),
                           ("near-docs-sig-qwen35-2026-06", "f8a56574009e58e33e9e95f0f6333c60b5f3b487")):
        r.append((f"{F}{folder}/*", extracted("nearai/docs", commit, "docs/cloud/verification/chat-verification.md")))
    # field/nearai-gateway-gptoss-2026-04/SOURCE.md
    gw = ("nearai/nearai-cloud-verifier", "dcf843b35aa493a8860ff21fd6008a7599a550f3")
    r += [(F + "nearai-gateway-gptoss-2026-04/attestation_report.json",
           up(*gw, "py/tests/fixtures/nearai_cloud_report_openai_gpt_oss_120b.json")),
          (F + "nearai-gateway-gptoss-2026-04/client_nonce.txt", extracted(*gw, "py/tests/conftest.py"))]
    # field/neardirect-qwen-2026-03/SOURCE.md (`pcs/*` = `neardirect_pcs_*`)
    r += [(ND + "attestation_report.json", ndirect("neardirect_attestation.json")),
          (ND + "client_nonce.txt", ndirect("neardirect_fixture_nonce.txt")),
          (ND + "nras_response.json", ndirect("neardirect_nras_response.json")),
          (ND + "nras_jwks.json", ndirect("neardirect_nras_jwks.json")),
          (ND + "collateral.json", dcap(ND, "pcs/tcbinfo.json", "pcs/qeidentity.json", "pcs/pckcrl.der", "pcs/rootcrl.der",
                                        tcb_chain="pcs/tcbinfo_headers.json#Tcb-Info-Issuer-Chain",
                                        qe_chain="pcs/qeidentity_headers.json#Sgx-Enclave-Identity-Issuer-Chain",
                                        crl_chain="pcs/pckcrl_headers.json#Sgx-Pck-Crl-Issuer-Chain")),
          (ND + "pcs/*", lambda p: ndirect("neardirect_pcs_" + p.rsplit("/", 1)[1]))]
    # field/nvidia-sdk-*/SOURCE.md
    gpu = "nv-attestation-sdk-cpp/unit-tests/testdata/sample_attestation_data/"
    r += [(F + "nvidia-sdk-hopper-cert-hold/hopper_evidence_cert_hold.json",
           up(NVSDK, NVSDK_C, "common-test-data/serialized_test_evidence/hopper_evidence_cert_hold.json")),
          (F + "nvidia-sdk-hopper-expired-rim/*.txt", lambda p: up(NVSDK, NVSDK_C, gpu + "gpu/" + p.rsplit("/", 1)[1])),
          (F + "nvidia-sdk-nvswitch-ls10/switch*.txt", lambda p: up(NVSDK, NVSDK_C, gpu + "switch/" + p.rsplit("/", 1)[1])),
          (F + "nvidia-sdk-nvswitch-ls10/switch_evidence_ls10.json",
           up(NVSDK, NVSDK_C, "common-test-data/serialized_test_evidence/switch_evidence_ls10.json")),
          (F + "nvidia-sdk-nvswitch-ls10/source/switch_spdm_parsed_output.json",
           unknown(NVSDK, NVSDK_C, None, "the directory above the folder `unit-tests/testdata/` it names"))]
    # field/pag-desktop-wire-vectors/SOURCE.md, field/phala-gateway-aci-aug-2026-08-28/SOURCE.md
    r += [(F + "pag-desktop-wire-vectors/aci_wire_fixtures.json",
           up(PAG, "60010577d90ffd62db022ef54a680cd69ffedde3", "apps/desktop/cli/tests/fixtures/aci_wire_fixtures.json")),
          (F + "phala-gateway-aci-aug-2026-08-28/*",
           extracted("vana-com/personal-server-ts", "3a21eb3f8910ef2a591f0f86161f0b0a654952af",
                     "packages/core/src/test-utils/e2ee-fixtures.ts"))]
    # field/tinfoil-cloud-sevsnp-2026-06/SOURCE.md
    r += [(TC + "capture/teep_report.txt", tcloud("report.txt")),
          (TC + "client_nonce.txt", derived("text_member", source=TC + "capture/manifest.json", member="nonce_hex")),
          (TC + "*", unknown(TEEP, TEEP_0630, TESTDATA + "tinfoil_v3_cloud_llama3-3-70b_20260629_021249/",
                             "the upstream file name (the note says only that the files are byte-exact)"))]
    # field/tinfoil-direct-gemma4-2026-06/SOURCE.md (the root CA CRL: the path as field/venice-qwen35-2026-06 gives it)
    r += [(TD + "capture/teep_report.txt", tdirect("report.txt")),
          (TD + "pcs/rootcacrl_2026-02-26.der", up(*ROOT_CRL)),
          (TD + "quote.bin", derived("base64_member", source=TD + "tinfoil_attestation.json", member="cpu.report")),
          (TD + "client_nonce.txt", derived("text_member", source=TD + "capture/manifest.json", member="nonce_hex")),
          (TD + "collateral.json", dcap(TD, "pcs/tcb.body", "pcs/qe_identity.body", "pcs/pckcrl.der",
                                        "pcs/rootcacrl_2026-02-26.der", tcb_chain="pcs/tcb.meta.json#Tcb-Info-Issuer-Chain",
                                        qe_chain="pcs/qe_identity.meta.json#Sgx-Enclave-Identity-Issuer-Chain",
                                        crl_chain="pcs/pckcrl.meta.json#Sgx-Pck-Crl-Issuer-Chain")),
          (TD + "*", unknown(TEEP, TEEP_0630, TESTDATA + "tinfoil_v3_direct_gemma4-31b_20260629_021304/", ELIDED))]
    # field/tinfoil-verifier-tdx-v2/SOURCE.md
    tv = ("tinfoilsh/verifier", "77e68207bfa8b477c2f3f319e3e18026579a9c13")
    r += [(TV + "collateral_src/*", lambda p: up(*tv, "attestation/collateral/" + p.rsplit("/", 1)[1])),
          (TV + "attestation_doc.json", extracted(*tv, "attestation/attestation_test.go")),
          (TV + "quote.bin", derived("gzip_base64_member", source=TV + "attestation_doc.json", member="body")),
          (TV + "collateral.json", dcap(TV, "collateral_src/tcb_info_90c06f000000.json", "collateral_src/qe_identity.json",
                                        "collateral_src/pck_crl_platform.crl", "collateral_src/root_ca.crl",
                                        tcb_chain="collateral_src/tcb_info_90c06f000000_chain.txt",
                                        qe_chain="collateral_src/qe_identity_chain.txt",
                                        crl_chain="collateral_src/pck_crl_platform_chain.txt"))]
    # field/venice-aci-gateway-glm52-2026-07/SOURCE.md
    r += [(VA + "attestation_report.json", vaci("responses/0001_api.venice.ai_api_v1_tee_attestation.body")),
          (VA + "collateral.json", dcap(VA, "pcs/tcb.body", "pcs/qe_identity.body", TD + "pcs/pckcrl.der",
                                        VQ + "pcs/rootcacrl_2026-02-26.der",
                                        tcb_chain="pcs/tcb.meta.json#Tcb-Info-Issuer-Chain",
                                        qe_chain="pcs/tcb.meta.json#Tcb-Info-Issuer-Chain",  # the same chain
                                        crl_chain=TD + "pcs/pckcrl.meta.json#Sgx-Pck-Crl-Issuer-Chain")),
          (VA + "client_nonce.txt", extracted(TEEP, "6ab0816dde497e7bff052777545364196295b9f5", None)),
          (VA + "*", unknown(TEEP, "6ab0816dde497e7bff052777545364196295b9f5",
                             TESTDATA + "venice_aci_e2ee-glm-5-2-p_20260713_164058/", ELIDED))]
    # field/venice-qwen35-2026-06/SOURCE.md
    r += [(VQ + "attestation_report.json", vqwen("responses/0001_api.venice.ai_api_v1_tee_attestation.body")),
          (VQ + "nras_response.json", vqwen("responses/0006_nras.attestation.nvidia.com_v3_attest_gpu.body")),
          (VQ + "nras_jwks.json", vqwen("responses/0007_nras.attestation.nvidia.com_.well-known_jwks.json.body")),
          (VQ + "nras_request.json", derived("base64_member", source=VQ + "capture/0006_nras.meta.json",
                                             member="req_body_base64")),
          (VQ + "pcs/rootcacrl_2026-02-26.der", up(*ROOT_CRL)),
          (VQ + "capture/teep_report.txt", vqwen("report.txt")),
          (VQ + "capture/manifest.json", vqwen("manifest.json")),
          (VQ + "client_nonce.txt", derived("text_member", source=VQ + "capture/manifest.json", member="nonce_hex")),
          (VQ + "collateral.json", dcap(VQ, "pcs/tcb.body", "pcs/qe_identity.body", "pcs/pckcrl.der",
                                        "pcs/rootcacrl_2026-02-26.der", tcb_chain="pcs/tcb.meta.json#Tcb-Info-Issuer-Chain",
                                        qe_chain="pcs/qe_identity.meta.json#Sgx-Enclave-Identity-Issuer-Chain",
                                        crl_chain="pcs/pckcrl.meta.json#Sgx-Pck-Crl-Issuer-Chain")),
          (VQ + "*", unknown(TEEP, TEEP_0630, TESTDATA + "venice_e2ee-qwen3-5-122b-a10b_20260610_014707/", ELIDED))]

    # nvidia/rims/SOURCE.md
    rims = "nvidia/rims/"
    sdk_rims = "nv-attestation-sdk-cpp/unit-tests/testdata/"
    r += [(rims + "NV_GPU_DRIVER_GH100_550.90.07.xml", up(*GNV, "testing/testdata/rim/NV_GPU_DRIVER_GH100_550.90.07.xml")),
          (rims + "NV_GPU_VBIOS_1010_0200_882_96009F0001.xml",
           up(*GNV, "testing/testdata/rim/NV_GPU_VBIOS_1010_0200_882_96009F0001.xml")),
          (rims + "NV_GPU_DRIVER_GH100_580.95.05.xml",
           up("Atlas-Authorization/pca", "6e4ef4add5217be2d487844103369bce1b0a54e0",
              "packages/pca/fixtures/real-nvidia-cc/collateral/driver-rim-NV_GPU_DRIVER_GH100_580.95.05.xml")),
          (rims + "NV_GPU_DRIVER_GH100_595.71.05.xml",
           up("solpbc/solstone-journal", "e89eb70e7b7a4cc9f39784579245dfefd197108d",
              "core/crates/solstone-core-spp-attest/rims/NV_GPU_DRIVER_GH100_595.71.05.xml")),
          (rims + "trustee_test-rim.b64", up("confidential-containers/trustee", "78962cd416dcc8a32f9377e0066a28fe21420f69",
                                             "rvps/src/extractors/swid/test-rim.b64")),
          (rims + "trustee_test-rim_96.00.74.00.1C.xml", derived("base64_file", source=rims + "trustee_test-rim.b64")),
          (rims + "ocsp/*.dat", lambda p: up(*GNV, "testing/testdata/ocsp/" + p.rsplit("/", 1)[1])),
          (rims + "ocsp/*.der", lambda p: derived("base64_file", source=p[:-4] + ".dat")),
          (rims + "*_PROD.swidtag", lambda p: up("NVIDIA/nvtrust", "028173093d43dbf37364bdc39ad7e696bccbce2e",
                                                 "guest_tools/gpu_verifiers/local_gpu_verifier/src/verifier/samples/"
                                                 + p.rsplit("/", 1)[1])),
          (rims + "*test_no_gpu.swidtag", lambda p: up("NVIDIA/nvtrust", "028173093d43dbf37364bdc39ad7e696bccbce2e",
                                                       "guest_tools/gpu_verifiers/local_gpu_verifier/src/verifier/samples/"
                                                       + p.rsplit("/", 1)[1])),
          (rims + "negative/*", unknown(NVSDK, NVSDK_C, sdk_rims, "the upstream file name (the note names the folder)")),
          (rims + "switchVBIOSRim_*@3712e901.xml",
           unknown(NVSDK, "98c9d967644e3f030cbe30770c0ac3e523fd1210", sdk_rims, "the upstream file name")),
          (rims + "switchVBIOSRim_*.xml", unknown(NVSDK, NVSDK_C, sdk_rims, "the upstream file name")),
          (rims + "NV_GPU_VBIOS_1010_0200_882_96005E0001_measurement_mismatch.xml",
           unknown(NVSDK, NVSDK_C, sdk_rims + "sample_rims/", "the upstream file name (the note elides it: `…`)")),
          (rims + "NV_GPU_VBIOS_G520_0280_895_9600D00003.xml",
           unknown("Atlas-Authorization/pca", "6e4ef4add5217be2d487844103369bce1b0a54e0", None, "the upstream path")),
          (rims + "NV_GPU_DRIVER_GH100_550.144.03.xml", unknown(NVSDK, None, None, "the commit", "the upstream path"))]

    # README.md (of the tree) and tdx/ground_truth.json (whose "source" names each quote's upstream file): the older
    # folders mostly name their upstream folder only; a file is given a path only where one of them names it
    qvl = ("Phala-Network/dcap-qvl", "9bffe30b4da5")
    tdxg = ("google/go-tdx-guest", "91f9a52f36c7")
    dstack = ("Dstack-TEE/dstack", "312dc605ebaaf93372534ffb135ea011533d28e9")
    r += [("tdx/dcap-qvl/TrustedRootCA.der", up(*qvl, "src/TrustedRootCA.der")),
          *[(f"tdx/dcap-qvl/{n}", up(*qvl, f"sample/{n}"))
            for n in ("tdx_quote", "tdx_quote_outdated", "tdx-quote.hex", "quote-from-tappd.hex")],
          ("tdx/go-tdx-guest/quote_v5_sample.dat", up(*tdxg, "testing/testdata/quote_v5_sample.dat")),
          ("tdx/go-tdx-guest/tdx_prod_quote_SPR_E4.dat", up(*tdxg, "testing/testdata/tdx_prod_quote_SPR_E4.dat")),
          ("tdx/go-tdx-guest/ccel_cos-113-tdx-quote.dat", up(*tdxg, "testing/testdata/ccel/cos-113-tdx-quote.dat")),
          ("tdx/go-tdx-guest/*_issuer_chain*.pem",
           extracted(*tdxg, "testing/test_cases.go")),
          ("tdx/dstack/quote-report.json", up(*dstack, "dstack/verifier/fixtures/quote-report.json")),
          ("tdx/dstack/tdx-lite-getquote.json", up(*dstack, "dstack/verifier/fixtures/tdx-lite-getquote.json")),
          *[(f"tdx/dstack/{b}.quote.hex", derived("text_member", source=f"tdx/dstack/{b}.json", member="quote"))
            for b in ("quote-report", "tdx-lite-getquote")],
          *[(f"tdx/dstack/{b}.event_log.json", derived("json_text_member", source=f"tdx/dstack/{b}.json",
                                                       member="event_log"))
            for b in ("quote-report", "tdx-lite-getquote")],
          ("tdx/private-ml-sdk/*", extracted("nearai/private-ml-sdk", "25c25025c556",
                                             "vllm-proxy/tests/app/sample_dstack_data.py")),
          ("reports/private-ml-sdk-2025-01/*", extracted("Phala-Network/private-ml-sdk", "fa11d12bb55f", "e2e/README.md")),
          ("reports/private-ml-sdk-dstack-sample/*", extracted("Phala-Network/private-ml-sdk", "fa11d12bb55f",
                                                              "vllm-proxy/tests/app/sample_dstack_data.py")),
          ("signatures/phala-docs-2024/*", extracted("Phala-Network/phala-docs", "60383323fdd6",
                                                     "confidential-ai/confidential-AI-API.md")),
          ("signatures/phala-docs-2025/*", extracted("Phala-Network/phala-docs", "7371a89a50db", "gpu-tee/inference-api.md")),
          ("nvidia/chutes_api/evidence.json", up("rayonlabs/chutes-api", "7e17afca1e95",
                                                 "nv-attest/tests/assets/evidence.json")),
          ("nvidia/teep_venice_eat/nvidia_eat_hopper.json",
           up(TEEP, TEEP_0630, "internal/attestation/testdata/nvidia_eat_hopper.json"))]
    # everything else under the README's folders: the folder only, never a file's path
    for prefix, (repo, commit, folder) in README_SOURCES.items():
        r.append((prefix + "*", unknown(repo, commit, folder, "the upstream path of this file (the README names "
                                        "the folder only)")))
    return r


# prefix → (repository, commit as the tree's README gives it, upstream folder or file): the tree's README.md tables
README_SOURCES: dict[str, tuple[str, str, str]] = {
    "signatures/phala-docs-2024/": ("Phala-Network/phala-docs", "60383323fdd6", "confidential-ai/confidential-AI-API.md"),
    "signatures/phala-docs-2025/": ("Phala-Network/phala-docs", "7371a89a50db", "gpu-tee/inference-api.md"),
    "reports/private-ml-sdk-2025-01/": ("Phala-Network/private-ml-sdk", "fa11d12bb55f", "e2e/README.md"),
    "reports/private-ml-sdk-dstack-sample/": ("Phala-Network/private-ml-sdk", "fa11d12bb55f",
                                             "vllm-proxy/tests/app/sample_dstack_data.py"),
    "reports/": (TEEP, "46ee4b854641", "internal/integration/testdata/"),
    "tdx/dcap-qvl/": ("Phala-Network/dcap-qvl", "9bffe30b4da5", "sample/, tests/near/"),
    "tdx/go-tdx-guest/": ("google/go-tdx-guest", "91f9a52f36c7", "testing/testdata/"),
    "tdx/private-ml-sdk/": ("nearai/private-ml-sdk", "25c25025c556", "vllm-proxy/tests/app/sample_dstack_data.py"),
    "tdx/dstack/": ("Dstack-TEE/dstack", "312dc605ebaa", "dstack/verifier/fixtures/"),
    "tdx/intel-qvl/": ("intel/SGX-TDX-DCAP-QuoteVerificationLibrary", "7e5b2a13ca54",
                       "Src/AttestationApp/sampleData/tdx/"),
    "nvidia/nvtrust/": ("NVIDIA/nvtrust", "028173093d43",
                        "guest_tools/gpu_verifiers/local_gpu_verifier/src/verifier/{samples,certs}"),
    "nvidia/nvtrust_sdk_claims/": ("NVIDIA/nvtrust", "028173093d43", "guest_tools/attestation_sdk/tests/"),
    "nvidia/nvidia_attestation_sdk/": (NVSDK, "73c032ebff68",
                                       "nv-attest-sdk-cpp/unit-tests/testdata/, common-test-data/serialized_test_evidence/"),
    "nvidia/trustee/": ("confidential-containers/trustee", "78962cd416dc", "deps/verifier/test_data/nvidia/"),
    "nvidia/chutes_api/": ("rayonlabs/chutes-api", "7e17afca1e95", "nv-attest/tests/assets/evidence.json"),
    "nvidia/teep_venice_eat/": (TEEP, "46ee4b854641", "internal/attestation/testdata/nvidia_eat_hopper.json"),
}
FULL_COMMIT = re.compile(r"`?([\w.-]+/[\w.-]+)`?\s*@\s*`?([0-9a-f]{40})\b")


def _note_for(root: Path, rel: Path) -> Path:
    """The nearest SOURCE.md (else README.md) above a file: where its origin is written."""
    for parent in [rel.parent, *rel.parent.parents]:
        for name in ("SOURCE.md", "README.md"):
            if (root / parent / name).is_file():
                return parent / name
    return Path("README.md")


def _full_commits(root: Path) -> dict[tuple[str, str], str]:
    """(repository, 12-hex prefix) → the full commit, where some note gives it in full."""
    out = {}
    for note in [*root.rglob("SOURCE.md"), *root.rglob("README.md")]:
        for repo, commit in FULL_COMMIT.findall(note.read_text(encoding="utf-8")):
            out[(repo, commit[:12])] = commit
    return out


def origin(root: Path, rel: str, rules, full) -> dict:
    for pattern, what in rules:
        if fnmatch.fnmatchcase(rel, pattern):
            d = dict(what(rel) if callable(what) else what)
            for ref in [d, *d.get("upstream_inputs", [])]:
                c = ref.get("commit")
                if c and len(c) < 40 and (ref.get("repository"), c[:12]) in full:
                    ref["commit"] = full[(ref["repository"], c[:12])]
            if d["origin"] == "upstream" and len(d["commit"]) < 40:
                d["commit_abbreviated"] = True  # as the notes give it: GitHub resolves it, or the fetch names it
            return d
    raise SystemExit(f"no origin is recorded for {rel}: add a rule")


def main(argv: list[str]) -> int:
    root = Path(argv[0]) if argv else REPO.parent / "shared" / "fixtures"
    rules, full = _rules(), _full_commits(root)
    files = []
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        rel = path.relative_to(root).as_posix()
        data = path.read_bytes()
        files.append({"path": rel, "size": len(data), "sha256": hashlib.sha256(data).hexdigest(),
                      "recorded_in": _note_for(root, Path(rel)).as_posix(), **origin(root, rel, rules, full)})
    paths = {f["path"] for f in files}
    for f in files:  # a derivation reads files of the tree only
        assert all(i in paths for i in f.get("inputs", [])), f
    about = ("phalanb's real fixtures: each file's sha256 (checked on every fetch) and its origin — upstream "
             "(repository, commit, path: fetched from there), derived (re-derived from its inputs by the named "
             "function of phalanb.fixtures), unknown (the notes do not record all a fetch needs: unrecorded says "
             "what) or project (written by the fixtures' compilers, no public upstream). Written by "
             "scripts/make_fixture_manifest.py from the notes of the tree.")
    body = ",\n".join(json.dumps(f, ensure_ascii=False, sort_keys=True) for f in files)
    OUT.write_text('{"about": ' + json.dumps(about) + ',\n"files": [\n' + body + "\n]}\n", encoding="utf-8")
    counts: dict[str, int] = {}
    for f in files:
        k = f["origin"] + ("" if f["origin"] != "derived" else (" (re-derivable)" if f["derivation"] else " (no function)"))
        counts[k] = counts.get(k, 0) + 1
    print(f"{len(files)} files → {OUT.relative_to(REPO)}: "
          + ", ".join(f"{n} {k}" for k, n in sorted(counts.items())))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
