"""--web.config.file parsing (exporter-toolkit format) and the listen-address warning."""

from __future__ import annotations

import base64
import subprocess

import bcrypt
import pytest

from tracer import webconfig
from tracer.httpd import is_loopback, listen_warning
from tracer.model.errors import BadWebConfig


@pytest.fixture(scope="module")
def cert(tmp_path_factory):
    d = tmp_path_factory.mktemp("tls")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=localhost",
                    "-keyout", str(d / "k.pem"), "-out", str(d / "c.pem")], check=True, capture_output=True)
    return d / "c.pem", d / "k.pem"


def basic(user: str, pw: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{pw}".encode()).decode()


def write(tmp_path, text: str) -> str:
    p = tmp_path / "web.yml"
    p.write_text(text)
    return str(p)


def test_tls_and_users_load_and_check(tmp_path, cert):
    h = bcrypt.hashpw(b"s3cret", bcrypt.gensalt(rounds=4)).decode().replace("$2b$", "$2y$")  # as htpasswd writes
    cfg = webconfig.load(write(tmp_path, f"tls_server_config:\n  cert_file: {cert[0]}\n  key_file: {cert[1]}\n"
                                         f"basic_auth_users:\n  prom: '{h}'\n"))
    assert cfg.tls is not None
    assert cfg.authorized(basic("prom", "s3cret"))
    assert cfg.authorized(basic("prom", "s3cret"))           # cached
    for bad in (basic("prom", "wrong"), basic("other", "s3cret"), "Basic !!!", "Bearer x", None, basic("prom", "")):
        assert not cfg.authorized(bad), bad


@pytest.mark.parametrize("text,what", [
    ("tls_server_config:\n  cert_file: /nonexistent\n  key_file: /nonexistent\n", "cannot load"),
    ("tls_server_config:\n  cert_file: x\n", "both cert_file and key_file"),
    ("tls_server_config:\n  cipher_suites: [x]\n", "unsupported tls_server_config key(s) cipher_suites"),
    ("http_server_config:\n  http2: false\n", "unsupported key(s) http_server_config"),
    ("basic_auth_users:\n  prom: plaintext\n", "needs a bcrypt hash"),
    ("- a list\n", "must be a mapping"),
    ("a: [\n", "not valid YAML"),
])
def test_bad_files_are_usage_errors_naming_the_problem(tmp_path, text, what):
    with pytest.raises(BadWebConfig) as err:
        webconfig.load(write(tmp_path, text))
    assert what in err.value.message and err.value.exit_code == 2


def test_missing_file_and_empty_file(tmp_path):
    with pytest.raises(BadWebConfig):
        webconfig.load(str(tmp_path / "none.yml"))
    cfg = webconfig.load(write(tmp_path, ""))
    assert cfg.tls is None and not cfg.users


def test_listen_warning_only_beyond_loopback():
    plain = webconfig.WebConfig()
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost")
    assert listen_warning("127.0.0.1", 9567, plain) is None
    for host in ("0.0.0.0", "::", ""):
        w = listen_warning(host, 9567, plain)
        assert w and "without TLS or basic auth" in w and "--web.config.file" in w
