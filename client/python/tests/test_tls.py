"""TLS (the ssl module, trusting a CA file) against `ordo serve
--tls-cert`. The certificates are made with the openssl command, so the
test is skipped where it is missing."""

import asyncio
import shutil
import subprocess
from pathlib import Path

import pytest

from conftest import ADMIN, Server, wasm
from ordo_client import AsyncClient, Client, ConnectionRefusedByServer, TlsError

pytestmark = pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl command")


def make_ca(dir: Path, name: str) -> tuple:
    key, cert = dir / f"{name}.key", dir / f"{name}.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
         "-nodes", "-keyout", key, "-out", cert, "-days", "2", "-subj", f"/CN=ordo python test {name}",
         "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign"],
        check=True, capture_output=True,
    )
    return key, cert


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    dir = tmp_path_factory.mktemp("pki")
    ca_key, ca = make_ca(dir, "ca")
    _, other_ca = make_ca(dir, "other-ca")
    key, csr, cert = dir / "server.key", dir / "server.csr", dir / "server.pem"
    subprocess.run(
        ["openssl", "req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
         "-keyout", key, "-out", csr, "-subj", "/CN=127.0.0.1"],
        check=True, capture_output=True,
    )
    ext = dir / "server.ext"
    ext.write_text(
        "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\n"
        "keyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\n"
    )
    subprocess.run(
        ["openssl", "x509", "-req", "-in", csr, "-CA", ca, "-CAkey", ca_key, "-CAcreateserial",
         "-out", cert, "-days", "2", "-extfile", ext],
        check=True, capture_output=True,
    )
    # PKCS#8, which every rustls version reads.
    pkcs8 = dir / "server.pk8"
    subprocess.run(["openssl", "pkcs8", "-topk8", "-nocrypt", "-in", key, "-out", pkcs8],
                   check=True, capture_output=True)
    return {"ca": str(ca), "other_ca": str(other_ca), "cert": str(cert), "key": str(pkcs8)}


@pytest.fixture(scope="module")
def tls_server(pki):
    srv = Server("--tls-cert", pki["cert"], "--tls-key", pki["key"])
    yield srv
    srv.close()


def test_tls_calls(tls_server, pki):
    with Client(tls_server.addr, tls=pki["ca"], admin_token=ADMIN) as client:
        client.deploy("kv", wasm("kv"))
        assert client.call("incr", {"key": "t", "by": 1}) == 1
        assert client.read("get", {"key": "t"}) == 1

    async def run():
        async with AsyncClient(tls_server.addr, tls=pki["ca"]) as client:
            return await client.call("incr", {"key": "t", "by": 1})

    assert asyncio.run(run()) == 2


def test_tls_with_the_wrong_ca_or_none(tls_server, pki):
    with pytest.raises(TlsError, match="CA"):
        Client(tls_server.addr, tls=pki["other_ca"])
    # A plain client on a TLS port is told so, in a plain welcome.
    with pytest.raises(ConnectionRefusedByServer, match="serves TLS") as caught:
        Client(tls_server.addr, connect_timeout=2)
    assert caught.value.reason == "BadHandshake" and not caught.value.retryable
