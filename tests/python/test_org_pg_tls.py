"""pocketkey-org on PostgreSQL over TLS (docs/org.md, "Databases"): Debian's PostgreSQL
started with `ssl=on`, a certificate for `localhost` from a CA made here (python
`cryptography`), and pg_hba refusing TCP connections without TLS, so a working connection is
a TLS one. `--database postgres://…?sslmode=verify-full&sslrootcert=CA` runs `init`, two
`serve` nodes and the REST API; the same URL with another CA, or with the server's address
where its certificate names only `localhost`, is refused (verify-full checks the chain and
the name); `sslmode=disable` is refused by the server."""

from __future__ import annotations

import datetime
import ipaddress

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from org_db import PG_USER, PostgresDb, PostgresServer
from test_org import Org, run


def _name(cn):
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def make_ca(cn):
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(_name(cn)).issuer_name(_name(cn))
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(hours=1))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=False, content_commitment=False,
                                         key_encipherment=False, data_encipherment=False,
                                         key_agreement=False, key_cert_sign=True, crl_sign=True,
                                         encipher_only=False, decipher_only=False), critical=True)
            .sign(key, hashes.SHA256()))
    return key, cert


def server_cert(ca_key, ca_cert, names):
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.timezone.utc)
    sans = [x509.IPAddress(ipaddress.ip_address(n)) if n[0].isdigit() else x509.DNSName(n) for n in names]
    cert = (x509.CertificateBuilder().subject_name(_name(names[0])).issuer_name(ca_cert.subject)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(hours=1))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName(sans), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .sign(ca_key, hashes.SHA256()))
    key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    return cert.public_bytes(serialization.Encoding.PEM), key_pem


@pytest.fixture(scope="module")
def tls_postgres(tmp_path_factory):
    """A TLS-only PostgreSQL whose certificate names `localhost` only, and the CA's file."""
    ca_key, ca_cert = make_ca("PocketKey test database CA")
    cert, key = server_cert(ca_key, ca_cert, ["localhost"])
    ca_file = tmp_path_factory.mktemp("pg-ca") / "ca.pem"
    ca_file.write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    ca_file.chmod(0o644)
    server = PostgresServer(tls=(cert, key))
    yield server, ca_file
    server.stop()


def tls_db(server, host, query):
    db = PostgresDb(server)
    db.url = f"postgres://{PG_USER}@{host}:{server.port}/{db.db}?{query}"
    db.args = ["--database", db.url]
    return db


def test_two_nodes_run_on_postgresql_over_verified_tls(tmp_path, tls_postgres):
    server, ca_file = tls_postgres
    db = tls_db(server, "localhost", f"sslmode=verify-full&sslrootcert={ca_file}")
    org = Org(tmp_path, db=db)
    try:
        assert len(org.nodes) == 2
        status, body = org.json("POST", "/api/v1/invites",
                                {"email": "alice@acme.example", "display_name": "Alice"}, node=0)
        assert status == 201, body
        status, page = org.json("GET", "/api/v1/keys", node=1)
        assert status == 200 and [k["email"] for k in page["keys"]] == ["alice@acme.example"]
        assert org.audit_verify().returncode == 0
        # The server saw these sessions as TLS ones.
        ssl = server.psql(db.db, "SELECT bool_and(ssl) FROM pg_stat_ssl JOIN pg_stat_activity "
                                 "USING (pid) WHERE datname = current_database() AND pid <> pg_backend_pid()")
        assert ssl.strip() == "t", ssl
    finally:
        org.stop()


@pytest.mark.parametrize("host,query,why", [
    # Another CA: the chain does not verify.
    ("localhost", "sslmode=verify-full&sslrootcert={other_ca}", "invalid peer certificate: unknownissuer"),
    # The certificate names localhost, not the address asked for.
    ("127.0.0.1", "sslmode=verify-full&sslrootcert={ca}", 'certificate not valid for name "127.0.0.1"'),
    # No TLS at all: the server refuses it.
    ("localhost", "sslmode=disable", "pg_hba.conf rejects connection"),
])
def test_an_unverified_or_plain_connection_is_refused(tmp_path, tls_postgres, host, query, why):
    server, ca_file = tls_postgres
    _, other_ca = make_ca("Someone else's CA")
    other = tmp_path / "other-ca.pem"
    other.write_bytes(other_ca.public_bytes(serialization.Encoding.PEM))
    db = tls_db(server, host, query.format(ca=ca_file, other_ca=other))
    proc = run("init", "--state-dir", str(tmp_path / "state"), *db.args, "--name", "Acme", check=False)
    assert proc.returncode != 0
    assert "cannot open the PostgreSQL database (--database)" in proc.stderr, proc.stderr
    assert why in proc.stderr.lower(), proc.stderr
    assert str(server.port) not in proc.stderr  # the URL is not echoed
    assert server.psql(db.db, "SELECT COUNT(*) FROM pg_tables WHERE schemaname = 'public'").strip() == "0"
