"""--web.config.file: TLS and basic auth in the Prometheus exporter-toolkit's format.

The file is the one node_exporter and every exporter-toolkit exporter read
(https://prometheus.io/docs/prometheus/latest/configuration/https/), so one file serves a fleet:

    tls_server_config:
      cert_file: /etc/tcptrace-explain/tls.crt
      key_file: /etc/tcptrace-explain/tls.key
      # client_auth_type: RequireAndVerifyClientCert   # with client_ca_file
      # client_ca_file: /etc/tcptrace-explain/ca.crt
      # min_version: TLS12                              # TLS12 (default) or TLS13
    basic_auth_users:
      prometheus: $2y$10$...                            # bcrypt hash (htpasswd -nBC 10 "" | tr -d ':\\n')

Supported keys are exactly those above; any other key is an error naming it rather than a
setting silently ignored. The file is read once at start-up (before privileges are dropped, so
it and the key may be readable by root only); restart to change it. Passwords are checked with
bcrypt; a successful check is remembered (keyed by a SHA-256 of the credentials) so a scrape
every second does not cost a bcrypt round each time.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import ssl
import threading
from dataclasses import dataclass, field
from typing import Any, Optional

from tracer.model.errors import BadWebConfig

TLS_KEYS = {"cert_file", "key_file", "client_auth_type", "client_ca_file", "min_version"}
TOP_KEYS = {"tls_server_config", "basic_auth_users"}
CLIENT_AUTH = {"NoClientCert": ssl.CERT_NONE, "VerifyClientCertIfGiven": ssl.CERT_OPTIONAL,
               "RequireAndVerifyClientCert": ssl.CERT_REQUIRED}
VERSIONS = {"TLS12": ssl.TLSVersion.TLSv1_2, "TLS13": ssl.TLSVersion.TLSv1_3}
CACHE_MAX = 256
# Checked against when the user is unknown, so a wrong user name costs as long as a wrong password.
_DUMMY = b"$2b$10$" + b"." * 53


def _fail(path: str, what: str) -> BadWebConfig:
    return BadWebConfig(f"{path}: {what}", "see the exporter-toolkit web configuration format in README.md "
                          "(tls_server_config, basic_auth_users)")


@dataclass
class WebConfig:
    tls: Optional[ssl.SSLContext] = None
    users: dict[str, bytes] = field(default_factory=dict)   # user -> bcrypt hash
    _ok: set[bytes] = field(default_factory=set)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def authorized(self, header: Optional[str]) -> bool:
        import bcrypt

        if not header or not header.startswith("Basic "):
            return False
        try:
            user, sep, password = base64.b64decode(header[6:].strip(), validate=True).decode("utf-8").partition(":")
        except (binascii.Error, UnicodeDecodeError):
            return False
        if not sep:
            return False
        key = hashlib.sha256(f"{user}\0{password}".encode()).digest()
        with self._lock:
            if key in self._ok:
                return True
        hashed = self.users.get(user)
        try:
            ok = bcrypt.checkpw(password.encode(), hashed or _DUMMY) and hashed is not None
        except ValueError:
            ok = False
        if ok:
            with self._lock:
                if len(self._ok) >= CACHE_MAX:
                    self._ok.clear()
                self._ok.add(key)
        return ok


def load(path: str) -> WebConfig:
    import yaml

    try:
        with open(path, encoding="utf-8") as fh:
            doc = yaml.safe_load(fh)
    except OSError as exc:
        raise _fail(path, f"cannot read it: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        raise _fail(path, f"not valid YAML ({exc})") from None
    if doc is None:
        return WebConfig()
    if not isinstance(doc, dict):
        raise _fail(path, "the top level must be a mapping")
    unknown = set(doc) - TOP_KEYS
    if unknown:
        raise _fail(path, f"unsupported key(s) {', '.join(sorted(map(str, unknown)))}")
    return WebConfig(tls=_tls(path, doc.get("tls_server_config")), users=_users(path, doc.get("basic_auth_users")))


def _tls(path: str, cfg: Any) -> Optional[ssl.SSLContext]:
    if cfg is None:
        return None
    if not isinstance(cfg, dict):
        raise _fail(path, "tls_server_config must be a mapping")
    unknown = set(cfg) - TLS_KEYS
    if unknown:
        raise _fail(path, f"unsupported tls_server_config key(s) {', '.join(sorted(map(str, unknown)))}")
    if not cfg.get("cert_file") or not cfg.get("key_file"):
        raise _fail(path, "tls_server_config needs both cert_file and key_file")
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    version = cfg.get("min_version", "TLS12")
    if version not in VERSIONS:
        raise _fail(path, f"min_version {version!r}: use TLS12 or TLS13")
    ctx.minimum_version = VERSIONS[version]
    try:
        ctx.load_cert_chain(str(cfg["cert_file"]), str(cfg["key_file"]))
    except (OSError, ssl.SSLError) as exc:
        raise _fail(path, f"cannot load cert_file/key_file: {getattr(exc, 'strerror', None) or exc}") from None
    auth = cfg.get("client_auth_type", "NoClientCert")
    if auth not in CLIENT_AUTH:
        raise _fail(path, f"client_auth_type {auth!r}: use one of {', '.join(CLIENT_AUTH)}")
    ctx.verify_mode = CLIENT_AUTH[auth]
    if auth != "NoClientCert":
        if not cfg.get("client_ca_file"):
            raise _fail(path, f"client_auth_type {auth} needs client_ca_file")
        try:
            ctx.load_verify_locations(cafile=str(cfg["client_ca_file"]))
        except (OSError, ssl.SSLError) as exc:
            raise _fail(path, f"cannot load client_ca_file: {getattr(exc, 'strerror', None) or exc}") from None
    return ctx


def _users(path: str, cfg: Any) -> dict[str, bytes]:
    if cfg is None:
        return {}
    if not isinstance(cfg, dict):
        raise _fail(path, "basic_auth_users must map user names to bcrypt hashes")
    out = {}
    for user, hashed in cfg.items():
        h = str(hashed)
        if not isinstance(user, str) or ":" in user or not h.startswith(("$2a$", "$2b$", "$2y$")) or len(h) != 60:
            raise _fail(path, f"basic_auth_users: {user!r} needs a bcrypt hash ($2y$..., 60 characters)")
        # Go's bcrypt and htpasswd write $2y$; python bcrypt 3.2 reads $2a$/$2b$ (the same algorithm).
        out[user] = ("$2b$" + h[4:] if h.startswith("$2y$") else h).encode()
    return out
