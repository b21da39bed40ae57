"""The OpenAPI document is the server's contract: schemathesis (`--checks all`) generates requests from it against
a live server and checks every answer (status codes and media types declared, bodies matching their schemas,
schema-valid data accepted, invalid data refused, no 5xx, 405 + Allow for other methods)."""

import subprocess

import pytest
from conftest import installed_script

pytest.importorskip("schemathesis", reason="schemathesis comes with the 'test' extra")

# Pictures and b64 strings the generator draws are schema-valid but rarely decodable: a schema cannot say "a PNG",
# so for the operations taking them a 400 or 415 for valid-looking data is the truthful answer.
CONFIG = """
[[operations]]
include-method = "POST"
checks.positive_data_acceptance.expected-statuses = ["2xx", "400", "404", "415"]
"""


def test_schemathesis_finds_nothing(live, tmp_path):
    executable = installed_script("schemathesis")
    if executable is None:
        pytest.skip("the schemathesis command is not installed")
    config = tmp_path / "schemathesis.toml"
    config.write_text(CONFIG)
    done = subprocess.run(
        [executable, "--config-file", str(config), "run", f"{live.url}/openapi.json", "--checks", "all",
         "--phases", "examples,fuzzing", "--max-examples", "8", "--generation-deterministic",
         "--no-color", "--report-dir", str(tmp_path)],
        capture_output=True, text=True, timeout=180, cwd=tmp_path)
    assert done.returncode == 0 and "No issues found" in done.stdout, done.stdout[-4000:] + done.stderr[-2000:]
    assert "Traceback" not in "".join(live.log)
