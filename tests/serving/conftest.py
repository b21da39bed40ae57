import pytest
from live import start_server



@pytest.fixture(scope="session")
def live(synthetic_model_dir):
    """``lenet-tf serve`` of the synthetic model on a free loopback port (a 2 s header deadline), shared by the
    tests that need real sockets; its stderr lines after start-up are in ``live.log``."""
    server = start_server("--checkpoint", str(synthetic_model_dir), "--header-timeout", "2")
    server.header_timeout = 2.0
    yield server
    server.stop()
