"""elliot.datasets: registry, fetch (through the real gdown), verification, atomic install, CLI.

Every download goes to servers started here on 127.0.0.1:

* plain URLs: an ``http.server`` thread; ``gdown.download(url=...)`` fetches from it (the same call
  users make for URL sources).
* Google Drive ids and folders: the same server also acts as an HTTPS proxy; after ``CONNECT
  drive.google.com:443`` it speaks TLS with a throw-away certificate for drive.google.com and
  drive.usercontent.google.com and answers like Drive does (``/uc?id=`` -> the virus-scan
  confirmation form -> ``drive.usercontent.google.com/download`` with Content-Disposition;
  ``/embeddedfolderview?id=`` for folders; the quota page).  The code under test runs unchanged
  (``gdown.download(id=...)``, ``gdown.download_folder(id=..., skip_download=True)``); only the
  standard HTTPS_PROXY / REQUESTS_CA_BUNDLE variables point requests at the fake.  What this does not
  exercise: Google's live pages, cookies, rate limits, and whether the catalogue's real ids resolve.
"""
from __future__ import annotations

import datetime
import hashlib
import importlib
import io
import json
import os
import pickle
import ssl
import subprocess
import sys
import tarfile
import threading
import urllib.parse
import zipfile
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest

from elliot.datasets import MARKER, DatasetError, ensure_dataset, fetch_dataset, load_registry
from elliot.datasets.convert import load_sparse_pickle
from elliot.errors import ElliotError

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"
DRIVE_HOSTS = ("drive.google.com", "drive.usercontent.google.com")
HTML = {"Content-Type": "text/html; charset=utf-8"}


@dataclass
class Resp:
    status: int = 200
    body: bytes = b""
    headers: dict = field(default_factory=dict)
    truncate: bool = False  # announce the full length, send half, hang up


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def do_GET(self):
        url = urllib.parse.urlsplit(self.path)
        host = (self.headers.get("Host") or "").split(":")[0]
        self.server.hits.append((host, url.path, url.query))
        resp = self.server.app(host, url.path, urllib.parse.parse_qs(url.query))
        self.send_response(resp.status)
        for k, v in resp.headers.items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(resp.body)))
        if resp.truncate:
            self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(resp.body[: len(resp.body) // 2] if resp.truncate else resp.body)
        if resp.truncate:
            self.close_connection = True

    def do_CONNECT(self):  # HTTPS proxy: the tunnel ends here, at a fake Google Drive
        self.send_response(200, "Connection established")
        self.end_headers()
        tls = self.server.tls.wrap_socket(self.connection, server_side=True)
        Handler(tls, self.client_address, self.server)
        self.close_connection = True


class Server:
    def __init__(self, tls=None):
        self.routes, self.drive = {}, FakeDrive()
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.httpd.app, self.httpd.hits, self.httpd.tls = self.app, [], tls
        self.port = self.httpd.server_address[1]
        self.base = f"http://127.0.0.1:{self.port}"
        threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True).start()

    @property
    def hits(self):
        return self.httpd.hits

    def app(self, host, path, query):
        if host in DRIVE_HOSTS:
            return self.drive(host, path, query)
        return self.routes.get(path, Resp(404, b"not found", HTML))


class FakeDrive:
    """Just the pages gdown reads, shaped like Google Drive's."""

    def __init__(self):
        self.files, self.folders, self.quota = {}, {}, set()

    def __call__(self, host, path, query):
        fid = (query.get("id") or [None])[0]
        if host == "drive.google.com" and path == "/uc":
            if fid in self.quota:
                return Resp(200, b'<html><body><p class="uc-error-subcaption">Too many users have viewed or '
                                 b'downloaded this file recently.</p></body></html>', HTML)
            if fid not in self.files:
                return Resp(404, b"<html><title>Google Drive - Page Not Found</title></html>", HTML)
            form = ('<form id="download-form" action="https://drive.usercontent.google.com/download" method="get">'
                    '<input type="submit" value="Download anyway"/><input type="hidden" name="id" value="{0}">'
                    '<input type="hidden" name="export" value="download"><input type="hidden" name="confirm" '
                    'value="t"><input type="hidden" name="uuid" value="4ee1">').format(fid)
            return Resp(200, f"<!DOCTYPE html><html><head><title>Google Drive - Virus scan warning</title></head>"
                             f"<body>{form}</form></body></html>".encode(), HTML)
        if host == "drive.usercontent.google.com" and path == "/download" and query.get("confirm") == ["t"]:
            name, body = self.files[fid]
            return Resp(200, body, {"Content-Type": "application/octet-stream",
                                    "Content-Disposition": f'attachment; filename="{name}"'})
        if host == "drive.google.com" and path == "/embeddedfolderview" and fid in self.folders:
            title, children = self.folders[fid]
            links = "".join(f'<a href="https://drive.google.com/drive/folders/{cid}">{n}</a>' if kind == "folder"
                            else f'<a href="https://drive.google.com/file/d/{cid}/view?usp=drive_web">{n}</a>'
                            for kind, cid, n in children)
            return Resp(200, f"<html><head><title>{title}</title></head><body>{links}</body></html>".encode(), HTML)
        return Resp(404, b"<html>no such page</html>", HTML)


def _tls_context(tmp: Path) -> ssl.SSLContext:
    """A throw-away self-signed certificate for the Drive hosts, trusted through REQUESTS_CA_BUNDLE."""
    x509 = pytest.importorskip("cryptography.x509")
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "elliot test fake drive")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(hours=2))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(h) for h in DRIVE_HOSTS]), critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(True, False, False, False, False, True, True, False, False), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .sign(key, hashes.SHA256()))
    (tmp / "ca.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (tmp / "key.pem").write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                    serialization.NoEncryption()))
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(tmp / "ca.pem", tmp / "key.pem")
    return ctx


@pytest.fixture
def server(monkeypatch):
    for var in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
    monkeypatch.delenv("ELLIOT_DATASETS_MIRROR", raising=False)
    srv = Server()
    yield srv
    srv.httpd.shutdown()
    srv.httpd.server_close()


@pytest.fixture
def drive(server, tmp_path, monkeypatch):
    """The server above, also reachable as Google Drive through HTTPS_PROXY."""
    server.httpd.tls = _tls_context(tmp_path)
    proxy = f"http://127.0.0.1:{server.port}"
    monkeypatch.setenv("HTTPS_PROXY", proxy)
    monkeypatch.setenv("https_proxy", proxy)
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(tmp_path / "ca.pem"))
    gdown_download = importlib.import_module("gdown.download")
    if hasattr(gdown_download, "DEFAULT_COOKIES_FILE"):  # keep gdown's cookie jar out of $HOME
        monkeypatch.setattr(gdown_download, "DEFAULT_COOKIES_FILE", str(tmp_path / "cookies.txt"))
    return server.drive


def make_zip(files: dict, top: str = "toy") -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for rel, data in files.items():
            zf.writestr(f"{top}/{rel}" if top else rel, data)
    return buf.getvalue()


def npy(arr) -> bytes:
    buf = io.BytesIO()
    np.save(buf, np.asarray(arr))
    return buf.getvalue()


TOY_FILES = {"train.tsv": "0\t1\t1\n1\t0\t1\n", "test.tsv": "0\t0\t1\n", "feat/0.npy": npy([1.0, 2.0]),
             "feat/1.npy": npy([3.0, 4.0])}
TOY_ZIP = make_zip(TOY_FILES)
LAYOUT = ["train.tsv", "test.tsv", "feat/"]


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def entry(url, checksum=None, unpack="zip", kind="url", **extra):
    return {"toy": {"sources": [{"kind": kind, "location": url, "checksum": checksum, "unpack": unpack}],
                    "layout": LAYOUT, "licence": "test data", **extra}}


def leftovers(root: Path):
    return sorted(p.name for p in root.iterdir()) if root.exists() else []


def test_url_fetch_lays_out_files_then_second_fetch_is_noop(server, tmp_path):
    server.routes["/toy.zip"] = Resp(200, TOY_ZIP)
    reg = entry(server.base + "/toy.zip", "sha256:" + sha(TOY_ZIP))
    logs = []
    res = fetch_dataset("toy", tmp_path / "data", registry=reg, quiet=True, log=logs.append)
    dest = tmp_path / "data" / "toy"
    assert res.status == "fetched" and res.verified and res.path == dest
    assert (dest / "train.tsv").read_text() == TOY_FILES["train.tsv"]  # the zip's top folder is stripped
    assert np.load(dest / "feat" / "1.npy").tolist() == [3.0, 4.0]
    marker = json.loads((dest / MARKER).read_text())
    assert marker["verified"] and marker["files"][0]["sha256"] == sha(TOY_ZIP)
    assert leftovers(tmp_path / "data") == ["toy"]  # no temporary folder left behind
    assert any("sha256 verified" in line for line in logs)
    hits = len(server.hits)
    logs.clear()
    assert ensure_dataset("toy", tmp_path / "data", registry=reg, log=logs.append) == dest
    assert len(server.hits) == hits and "nothing to do" in logs[-1]


def test_checksum_mismatch_leaves_nothing_and_names_url_expected_got(server, tmp_path):
    server.routes["/toy.zip"] = Resp(200, TOY_ZIP)
    wrong = "0" * 64
    with pytest.raises(DatasetError) as err:
        fetch_dataset("toy", tmp_path / "data", registry=entry(server.base + "/toy.zip", "sha256:" + wrong),
                      quiet=True, log=None)
    msg = str(err.value)
    assert server.base + "/toy.zip" in msg and f"expected sha256:{wrong}" in msg and f"got sha256:{sha(TOY_ZIP)}" in msg
    assert "\n" not in msg and isinstance(err.value, ElliotError)
    assert leftovers(tmp_path / "data") == []


def test_md5_checksum_is_accepted(server, tmp_path):
    server.routes["/toy.zip"] = Resp(200, TOY_ZIP)
    md5 = hashlib.md5(TOY_ZIP).hexdigest()
    res = fetch_dataset("toy", tmp_path, registry=entry(server.base + "/toy.zip", "md5:" + md5), quiet=True, log=None)
    assert res.verified
    with pytest.raises(DatasetError, match=f"expected md5:{'f' * 32}, got md5:{md5}"):
        fetch_dataset("toy", tmp_path / "b", registry=entry(server.base + "/toy.zip", "md5:" + "f" * 32),
                      quiet=True, log=None)


def test_http_404_names_url_and_status(server, tmp_path):
    with pytest.raises(DatasetError) as err:
        fetch_dataset("toy", tmp_path, registry=entry(server.base + "/missing.zip"), quiet=True, log=None)
    assert f"{server.base}/missing.zip: download failed: HTTP 404" in str(err.value)
    assert leftovers(tmp_path) == []


def test_truncated_transfer_and_corrupt_zips_are_refused(server, tmp_path):
    server.routes["/cut.zip"] = Resp(200, TOY_ZIP, truncate=True)
    with pytest.raises(DatasetError, match=r"/cut\.zip: download failed"):
        fetch_dataset("toy", tmp_path, registry=entry(server.base + "/cut.zip"), quiet=True, log=None)
    server.routes["/short.zip"] = Resp(200, TOY_ZIP[: len(TOY_ZIP) * 2 // 3])  # complete transfer of a cut file
    with pytest.raises(DatasetError, match=r"/short\.zip: truncated or damaged zip archive"):
        fetch_dataset("toy", tmp_path, registry=entry(server.base + "/short.zip"), quiet=True, log=None)
    flipped = bytearray(TOY_ZIP)
    start = TOY_ZIP.index(b"toy/train.tsv") + len("toy/train.tsv")
    flipped[start + 2] ^= 0xFF  # inside the first member's compressed data
    server.routes["/crc.zip"] = Resp(200, bytes(flipped))
    with pytest.raises(DatasetError, match=r"/crc\.zip: corrupt zip archive"):
        fetch_dataset("toy", tmp_path, registry=entry(server.base + "/crc.zip"), quiet=True, log=None)
    server.routes["/page.zip"] = Resp(200, b"<html>sign in</html>", HTML)
    with pytest.raises(DatasetError, match=r"not a zip archive \(the download starts with b'<html>"):
        fetch_dataset("toy", tmp_path, registry=entry(server.base + "/page.zip"), quiet=True, log=None)
    assert leftovers(tmp_path) == []


def test_failed_refetch_keeps_the_installed_copy(server, tmp_path):
    server.routes["/toy.zip"] = Resp(200, TOY_ZIP)
    fetch_dataset("toy", tmp_path, registry=entry(server.base + "/toy.zip"), quiet=True, log=None)
    before = (tmp_path / "toy" / MARKER).read_text()
    del server.routes["/toy.zip"]
    with pytest.raises(DatasetError, match="HTTP 404"):
        fetch_dataset("toy", tmp_path, registry=entry(server.base + "/toy.zip"), force=True, quiet=True, log=None)
    assert (tmp_path / "toy" / MARKER).read_text() == before and (tmp_path / "toy" / "train.tsv").is_file()
    assert leftovers(tmp_path) == ["toy"]


def test_foreign_incomplete_folder_needs_force(server, tmp_path):
    server.routes["/toy.zip"] = Resp(200, TOY_ZIP)
    (tmp_path / "toy").mkdir()
    (tmp_path / "toy" / "train.tsv").write_text("mine")
    reg = entry(server.base + "/toy.zip")
    with pytest.raises(DatasetError, match=r"exists but is not a complete 'toy' \(missing: test.tsv, feat/\)"):
        fetch_dataset("toy", tmp_path, registry=reg, quiet=True, log=None)
    assert (tmp_path / "toy" / "train.tsv").read_text() == "mine"
    assert fetch_dataset("toy", tmp_path, registry=reg, force=True, quiet=True, log=None).status == "fetched"
    assert (tmp_path / "toy" / "train.tsv").read_text() == TOY_FILES["train.tsv"]


def test_unverified_download_prints_computed_sha256(server, tmp_path):
    server.routes["/toy.zip"] = Resp(200, TOY_ZIP)
    logs = []
    res = fetch_dataset("toy", tmp_path, registry=entry(server.base + "/toy.zip"), quiet=True, log=logs.append)
    assert not res.verified
    assert any("NOT VERIFIED" in line and f"sha256:{sha(TOY_ZIP)}" in line for line in logs)


def test_mirror_env_tar_gz_single_file_and_local_archive(server, tmp_path, monkeypatch):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tf:
        for rel, data in TOY_FILES.items():
            data = data.encode() if isinstance(data, str) else data
            info = tarfile.TarInfo(f"toy/{rel}")
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    server.routes["/pub/toy.tar.gz"] = Resp(200, buf.getvalue())
    monkeypatch.setenv("ELLIOT_DATASETS_MIRROR", server.base)
    reg = entry("https://datasets.example.org/pub/toy.tar.gz", "sha256:" + sha(buf.getvalue()), unpack="auto")
    assert fetch_dataset("toy", tmp_path / "a", registry=reg, quiet=True, log=None).verified
    assert (tmp_path / "a" / "toy" / "feat" / "0.npy").is_file()
    server.routes["/pub/u.data"] = Resp(200, b"1\t2\t5\t0\n")
    one = {"one": {"sources": [{"kind": "url", "location": "https://x.org/pub/u.data", "unpack": "file",
                                "dest": "u.data"}], "layout": ["u.data"]}}
    fetch_dataset("one", tmp_path / "a", registry=one, quiet=True, log=None)
    assert (tmp_path / "a" / "one" / "u.data").read_bytes() == b"1\t2\t5\t0\n"
    archive = tmp_path / "toy.zip"
    archive.write_bytes(TOY_ZIP)
    bad = entry("https://nowhere.invalid/toy.zip", "sha256:" + sha(TOY_ZIP))
    assert fetch_dataset("toy", tmp_path / "b", registry=bad, source_override=str(archive), log=None).verified
    assert archive.is_file()  # the user's file is copied, never moved


def test_manual_entry_prints_where_and_layout(tmp_path):
    reg = {"hand": {"sources": [{"kind": "manual", "location": "https://example.org/request-form"}],
                    "layout": ["a.tsv"]}}
    logs = []
    with pytest.raises(DatasetError, match="manual source"):
        fetch_dataset("hand", tmp_path, registry=reg, log=logs.append)
    assert "https://example.org/request-form" in logs[0] and "a.tsv" in logs[1]


def test_from_local_copy_and_link_verify_layout(tmp_path):
    src = tmp_path / "src"
    (src / "feat").mkdir(parents=True)
    (src / "train.tsv").write_text("x")
    reg = entry("https://unused.invalid/toy.zip")
    with pytest.raises(DatasetError, match=r"src: incomplete layout for 'toy': missing test.tsv"):
        fetch_dataset("toy", tmp_path / "data", registry=reg, from_local=src, log=None)
    (src / "test.tsv").write_text("y")
    assert fetch_dataset("toy", tmp_path / "data", registry=reg, from_local=src, log=None).status == "copied"
    assert not (tmp_path / "data" / "toy" / "train.tsv").is_symlink()
    res = fetch_dataset("toy", tmp_path / "d2", registry=reg, from_local=src, link=True, log=None)
    assert res.status == "linked" and (res.path / "train.tsv").is_symlink() and not (src / MARKER).exists()
    assert ensure_dataset("toy", tmp_path / "d2", source_override=str(src), registry=reg, log=None) == res.path


@pytest.mark.parametrize("name", ["tiktok", "lfm2k", "ml100k"])
def test_builtin_local_copy_matches_registry_layout(tmp_path, name):
    entry_ = load_registry().get(name)
    if not (ROOT / entry_.local).is_dir():
        pytest.skip(f"{entry_.local} not present")
    res = fetch_dataset(name, tmp_path, from_local=True, link=True, log=None)  # hashes what the registry knows
    assert res.status == "linked" and res.verified == (name != "ml100k")


def test_gdrive_id_through_gdown_confirmation_form(drive, server, tmp_path):
    """The built-in 'office' entry (its real Drive id), fetched through gdown against the fake Drive."""
    office = load_registry().get("office")
    body = make_zip({"train.txt": "0 1\n", "val.txt": "0 2\n", "test.txt": "1 2\n", "image_feat/0.npy": npy([1.0]),
                     "text_feat/0.npy": npy([2.0])}, top="office")
    drive.files[office.sources[0].location] = ("office.zip", body)
    logs = []
    res = fetch_dataset("office", tmp_path, quiet=True, log=logs.append)
    assert res.status == "fetched" and not res.verified
    assert any(f"computed sha256:{sha(body)}" in line for line in logs)
    assert (tmp_path / "office" / "image_feat" / "0.npy").is_file()
    hosts = [(h, p) for h, p, _ in server.hits]
    assert ("drive.google.com", "/uc") in hosts and ("drive.usercontent.google.com", "/download") in hosts


def test_gdrive_failures_name_the_id(drive, tmp_path):
    gid, root = "1" * 33, tmp_path / "data"
    reg = entry(gid, kind="gdrive")
    with pytest.raises(DatasetError) as err:
        fetch_dataset("toy", root, registry=reg, quiet=True, log=None)
    assert str(err.value).startswith(f"Google Drive id {gid}: download failed") and "\n" not in str(err.value)
    drive.files[gid] = ("toy.zip", TOY_ZIP)
    drive.quota.add(gid)
    with pytest.raises(DatasetError, match=f"Google Drive id {gid}: .*Too many users have viewed"):
        fetch_dataset("toy", root, registry=reg, quiet=True, log=None)
    drive.quota.clear()
    with pytest.raises(DatasetError, match=f"Google Drive id {gid}: checksum mismatch: expected sha256:"):
        fetch_dataset("toy", root, registry=entry(gid, "sha256:" + "a" * 64, kind="gdrive"), quiet=True, log=None)
    assert leftovers(root) == []


def test_gdrive_folder_fetches_only_the_subfolder(drive, server, tmp_path):
    """The built-in 'mmrec_baby' entry: MMRec's real folder id, listed and downloaded through gdown."""
    folder = load_registry().get("mmrec_baby").sources[0].location
    ids = {n: f"{n:_<28}".replace(".", "_") for n in ("baby", "sports", "b1", "b2", "b3", "s1")}
    drive.folders[folder] = ("data", [("folder", ids["baby"], "baby"), ("folder", ids["sports"], "sports")])
    drive.folders[ids["baby"]] = ("baby", [("file", ids["b1"], "baby.inter"), ("file", ids["b2"], "image_feat.npy"),
                                           ("file", ids["b3"], "text_feat.npy")])
    drive.folders[ids["sports"]] = ("sports", [("file", ids["s1"], "sports.inter")])
    drive.files.update({ids["b1"]: ("baby.inter", b"userID\titemID\tx_label\n0\t0\t0\n"),
                        ids["b2"]: ("image_feat.npy", npy([[1.0]])), ids["b3"]: ("text_feat.npy", npy([[2.0]])),
                        ids["s1"]: ("sports.inter", b"nope")})
    res = fetch_dataset("mmrec_baby", tmp_path, quiet=True, log=None)
    assert sorted(p.name for p in res.path.iterdir()) == sorted([MARKER, "baby.inter", "image_feat.npy",
                                                                  "text_feat.npy"])
    assert not any(q == f"id={ids['s1']}" for _, _, q in server.hits)
    with pytest.raises(DatasetError, match=r"no files under sub-folder 'elec' \(it has: baby, sports\)"):
        fetch_dataset("mmrec_elec", tmp_path, quiet=True, log=None)


def test_cli_list_fetch_and_one_line_error(server, tmp_path):
    server.routes["/toy.zip"] = Resp(200, TOY_ZIP)
    reg = tmp_path / "reg.json"
    env = {k: v for k, v in os.environ.items() if "proxy" not in k.lower()}
    env["NO_PROXY"] = "127.0.0.1"

    def cli(*args):
        return subprocess.run([sys.executable, "-m", "elliot.datasets", *args], capture_output=True, text=True,
                              cwd=tmp_path, env=env, timeout=60)

    reg.write_text(json.dumps({"datasets": entry(server.base + "/toy.zip", "sha256:" + sha(TOY_ZIP))}))
    out = cli("fetch", "toy", "--registry", str(reg), "--quiet")
    assert out.returncode == 0, out.stderr
    assert (tmp_path / "data" / "toy" / "test.tsv").is_file()
    listing = cli("list", "--registry", str(reg))
    assert listing.returncode == 0 and "toy" in listing.stdout and "tiktok" in listing.stdout
    reg.write_text(json.dumps({"datasets": entry(server.base + "/toy.zip", "sha256:" + "0" * 64)}))
    bad = cli("fetch", "toy", "--registry", str(reg), "--root", "other", "--quiet")
    assert bad.returncode == 2 and "Traceback" not in bad.stderr
    assert bad.stderr.count("\n") == 1 and bad.stderr.startswith("error: ") and "checksum mismatch" in bad.stderr
    unknown = cli("fetch", "tiktk")
    assert unknown.returncode == 2 and "did you mean 'tiktok'" in unknown.stderr


def test_registry_entries_are_sound():
    reg = load_registry()
    assert {"tiktok", "lfm2k", "ml100k", "ml1m", "office", "toys", "mmrec_baby"} <= set(reg.names())
    assert reg.get("ml100k").sources[0].checksum == "md5:0e33842e24a9c977be4e0107933c0723"
    assert reg.get("ml1m").sources[0].checksum == "md5:c4d9eecfca2ab87c1945afe126590906"
    for name in reg.names():
        e = reg.get(name)
        assert e.licence and e.citation and e.layout
        for s in e.sources:
            if s.kind in ("gdrive", "gdrive_folder"):
                assert s.checksum is None  # nobody published one: never invented
    with pytest.raises(DatasetError, match="is not 'sha256:<64 hex>'"):
        load_registry({"x": {"sources": [{"kind": "url", "location": "u", "checksum": "sha256:abc"}], "layout": ["a"]}})


def test_sparse_pickle_loader_refuses_other_objects(tmp_path):
    class Evil:
        def __reduce__(self):
            return (os.system, ("echo pwned",))

    (tmp_path / "evil.pkl").write_bytes(pickle.dumps(Evil()))
    with pytest.raises(DatasetError, match="refusing to load"):
        load_sparse_pickle(tmp_path / "evil.pkl")
    import scipy.sparse as sp
    (tmp_path / "ok.pkl").write_bytes(pickle.dumps(sp.coo_matrix(([1.0], ([0], [2])), shape=(2, 3))))
    m = load_sparse_pickle(tmp_path / "ok.pkl")
    assert m.shape == (2, 3) and m.col.tolist() == [2]


def test_moved_source_is_refetched_but_an_override_is_kept(server, tmp_path):
    server.routes["/v1.zip"] = Resp(200, TOY_ZIP)
    server.routes["/v2.zip"] = Resp(200, TOY_ZIP)
    fetch_dataset("toy", tmp_path, registry=entry(server.base + "/v1.zip"), quiet=True, log=None)
    res = fetch_dataset("toy", tmp_path, registry=entry(server.base + "/v2.zip"), quiet=True, log=None)
    assert res.status == "fetched"  # the registry points elsewhere now: fetched again
    fetch_dataset("toy", tmp_path / "o", registry=entry("https://nowhere.invalid/t.zip"),
                  source_override=server.base + "/v1.zip", quiet=True, log=None)
    again = fetch_dataset("toy", tmp_path / "o", registry=entry("https://nowhere.invalid/t.zip"), log=None)
    assert again.status == "present"
