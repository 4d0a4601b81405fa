"""The published IS-Net weights on any machine: fetched with npm, checked, converted, cached.

The npm package ``@imgly/background-removal-data`` 1.4.5 ships the general-use IS-Net of the DIS
release (xuebinqin/DIS, ``isnet-general-use.pth``; its ``ThirdPartyLicenses.json`` names the model
"ISNET" from that repository) as an fp16 ONNX model, split into chunk files under ``dist/`` that
``dist/resources.json`` describes (``/models/medium``: 88,188,479 bytes in 22 chunks, each named by the
SHA-256 of its bytes). :func:`ensure_published_isnet` runs ``npm pack`` (the registry's ordinary client)
into a temporary folder, checks the tarball against the pinned integrity (SHA-512, base64, as npm
writes it), reassembles the model in offset order (checking every chunk's hash and the total size),
converts it (:mod:`dissam.model.onnx_import`) and writes a dissam checkpoint of the 3-channel IS-Net
(fp32 values of the fp16 weights) into the user's cache folder. The tarball is deleted; weights are
never part of this repository. The package is AGPL-3.0 (IMG.LY), IS-Net's code Apache-2.0.

Every failure is a :class:`PublishedWeightsError`, one line that says where else to get the weights:
the DIS release's ``isnet-general-use.pth`` / ``isnet.pth``, which load the same way
(:func:`dissam.model.checkpoint.load_refiner`), or a tarball fetched with npm elsewhere.
"""
from __future__ import annotations

import base64
import hashlib
import json
import os
import shutil
import subprocess
import tarfile
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from .checkpoint import CheckpointError, load_checkpoint, save_refiner

CACHE_ENV = "DISSAM_CACHE_DIR"
ISNET_ENV = "DISSAM_ISNET_CHECKPOINT"  # weights a user gives instead of the cached conversion


@dataclass(frozen=True)
class PublishedPackage:
    """An npm package that carries IS-Net as ONNX, pinned: name, version, tarball integrity, and the
    model's entry in ``dist/resources.json`` with its size (bytes) and chunk count."""

    name: str = "@imgly/background-removal-data"
    version: str = "1.4.5"
    integrity: str = ("sha512-iRXZpPd7YirbJ4eOZ3SlvbdJkAc/LxVjzWLMHOezmRrVThPJPdPc+Y2kHEAVFEVvpDIuvBDyOfTTFBSJT2QR5w==")
    resource: str = "/models/medium"
    size: int = 88_188_479
    chunks: int = 22
    checkpoint_name: str = "isnet-general-use_imgly-1.4.5_fp16.pth"

    @property
    def spec(self) -> str:
        """What ``npm pack`` is given: ``name@version``."""
        return f"{self.name}@{self.version}"


ISNET_GENERAL_USE = PublishedPackage()


class PublishedWeightsError(CheckpointError):
    """The published IS-Net could not be fetched, checked or converted; a one-line message that says why
    and where else to get the weights."""


def user_cache_dir() -> Path:
    """``$DISSAM_CACHE_DIR``, else ``$XDG_CACHE_HOME/dissam``, else ``~/.cache/dissam``."""
    root = os.environ.get(CACHE_ENV)
    if root:
        return Path(root)
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "dissam"


def published_checkpoint_path(package: PublishedPackage = ISNET_GENERAL_USE,
                              cache_dir: str | Path | None = None) -> Path:
    """Where :func:`ensure_published_isnet` keeps the converted checkpoint: ``<cache>/weights/<name>``."""
    return Path(cache_dir or user_cache_dir()) / "weights" / package.checkpoint_name


def find_published_isnet(given: str | Path | None = None) -> Path:
    """The published IS-Net weights to use: ``given``, else ``$DISSAM_ISNET_CHECKPOINT``, else the
    checkpoint :func:`ensure_published_isnet` converted into the cache; a one-line
    :class:`~dissam.model.checkpoint.CheckpointError` saying how to get them when there are none."""
    chosen = given or os.environ.get(ISNET_ENV)
    if chosen:
        if not Path(chosen).is_file():
            raise CheckpointError(f"IS-Net weights not found: {chosen}")
        return Path(chosen)
    cached = published_checkpoint_path()
    if not cached.is_file():
        raise CheckpointError(f"no published IS-Net weights in {cached.parent}: run `dissam weights isnet` "
                              f"(or `make weights`), or {elsewhere()}")
    return cached


def elsewhere(package: PublishedPackage = ISNET_GENERAL_USE) -> str:
    """Where else the weights come from (the tail of every error message)."""
    return (f"get the weights elsewhere: run `npm pack {package.spec}` on a machine that can reach the npm "
            f"registry and convert the tarball with `dissam weights isnet --tarball FILE`, or download "
            f"isnet-general-use.pth (or isnet.pth) from the DIS release (github.com/xuebinqin/DIS) and give "
            f"it with --isnet-checkpoint")


def tarball_integrity(path: str | Path) -> str:
    """npm's integrity string of a file: ``sha512-`` + the base64 SHA-512 of its bytes."""
    digest = hashlib.sha512()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return "sha512-" + base64.b64encode(digest.digest()).decode("ascii")


def check_integrity(path: str | Path, package: PublishedPackage = ISNET_GENERAL_USE) -> None:
    """PublishedWeightsError unless the tarball's integrity is the pinned one."""
    found = tarball_integrity(path)
    if found != package.integrity:
        raise PublishedWeightsError(f"{path}: integrity {found} differs from the pinned {package.integrity} of "
                                    f"{package.spec}; not converted. {elsewhere(package)}")


_UNREACHABLE = ("ENOTFOUND", "EAI_AGAIN", "ECONNREFUSED", "ECONNRESET", "ETIMEDOUT", "ENETUNREACH",
                "EHOSTUNREACH", "network", "proxy")


def _npm_reason(stderr: str) -> str:
    """The first ``npm error`` line (npm's own summary), else the last non-empty line."""
    lines = [ln.strip() for ln in stderr.splitlines() if ln.strip()]
    errors = [ln for ln in lines if ln.lower().startswith(("npm error", "npm err!"))]
    return (errors or lines or ["no message"])[0][:300]


def npm_pack(package: PublishedPackage, dest: str | Path, npm: str = "npm", timeout: float = 1800.0) -> Path:
    """``npm pack <name@version>`` into ``dest``; the tarball's path. PublishedWeightsError when npm is
    missing, the registry cannot be reached, or npm fails otherwise (npm's own reason in the message)."""
    exe = shutil.which(npm)
    if exe is None:
        raise PublishedWeightsError(f"npm is not installed (on Debian/Ubuntu: sudo apt-get install npm), so "
                                    f"{package.spec} cannot be fetched; {elsewhere(package)}")
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    try:
        run = subprocess.run([exe, "pack", package.spec, "--json", "--pack-destination", str(dest)],
                             cwd=dest, capture_output=True, text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        raise PublishedWeightsError(f"`npm pack {package.spec}` took more than {timeout:.0f} s (registry "
                                    f"unreachable or slow); {elsewhere(package)}") from None
    if run.returncode != 0:
        reason = _npm_reason(run.stderr)
        what = ("the npm registry is unreachable" if any(k.lower() in run.stderr.lower() for k in _UNREACHABLE)
                else "npm failed")
        raise PublishedWeightsError(f"`npm pack {package.spec}`: {what} ({reason}); {elsewhere(package)}")
    tarballs = sorted(dest.glob("*.tgz"))
    if len(tarballs) != 1:
        raise PublishedWeightsError(f"`npm pack {package.spec}` left {len(tarballs)} tarballs in {dest}, "
                                    f"expected one; {elsewhere(package)}")
    return tarballs[0]


def _tar_members(tarball: str | Path, names: set[str]) -> dict[str, bytes]:
    """The bytes of the tarball's ``package/dist/<name>`` files for ``names`` (those present), in one
    pass over the compressed stream, stopping when all are read (a gzip stream cannot seek back
    without decompressing again from the start)."""
    found: dict[str, bytes] = {}
    with tarfile.open(tarball, "r|gz") as tar:
        for info in tar:
            name = info.name[len("package/dist/"):] if info.name.startswith("package/dist/") else None
            if name in names and info.isfile():
                fh = tar.extractfile(info)
                found[name] = fh.read() if fh is not None else b""
                if len(found) == len(names):
                    break
    return found


def read_model(tarball: str | Path, package: PublishedPackage = ISNET_GENERAL_USE) -> bytes:
    """The ONNX model's bytes, reassembled from the tarball's chunk files in offset order. Each chunk's
    SHA-256 must be its name, the chunks must tile ``[0, size)`` and the size must be the pinned one."""
    def fail(what: str) -> PublishedWeightsError:
        return PublishedWeightsError(f"{tarball}: {what}; {elsewhere(package)}")

    try:
        resources = _tar_members(tarball, {"resources.json"})
        if "resources.json" not in resources:
            raise fail("no package/dist/resources.json in the tarball")
        entry = json.loads(resources["resources.json"]).get(package.resource)
        if not isinstance(entry, dict) or not isinstance(entry.get("chunks"), list):
            raise fail(f"dist/resources.json has no {package.resource!r} entry with chunks")
        chunks = sorted(entry["chunks"], key=lambda c: int(c["offsets"][0]))
        if len(chunks) != package.chunks or int(entry.get("size", -1)) != package.size:
            raise fail(f"{package.resource} has {len(chunks)} chunks and {entry.get('size')} bytes, expected "
                       f"{package.chunks} and {package.size}")
        names = {str(c["hash"]) for c in chunks}
        bodies = _tar_members(tarball, names)
        data = bytearray()
        for chunk in chunks:
            start, end = (int(v) for v in chunk["offsets"])
            body = bodies.get(chunk["hash"])
            if body is None:
                raise fail(f"no package/dist/{chunk['hash']} in the tarball")
            if start != len(data) or end - start != len(body):
                raise fail(f"chunk {chunk['hash']} covers [{start}, {end}), {len(body)} bytes, after "
                           f"{len(data)} bytes: the chunks do not tile the model")
            if hashlib.sha256(body).hexdigest() != chunk["hash"]:
                raise fail(f"chunk {chunk['hash']}: its SHA-256 differs from its name")
            data += body
    except (tarfile.TarError, OSError, EOFError, json.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
        raise fail(f"cannot read the tarball ({type(exc).__name__}: {exc})") from exc
    if len(data) != package.size:
        raise fail(f"the reassembled model has {len(data)} bytes, expected {package.size}")
    return bytes(data)


def convert_tarball(tarball: str | Path, out: str | Path, package: PublishedPackage = ISNET_GENERAL_USE) -> Path:
    """Check, reassemble and convert a tarball of ``package`` into our checkpoint at ``out`` (atomic).
    The checkpoint's ``source`` entry records the package, its integrity and the ONNX model's SHA-256."""
    from .onnx_import import isnet_from_onnx

    check_integrity(tarball, package)
    data = read_model(tarball, package)
    try:
        model = isnet_from_onnx(data)
    except CheckpointError as exc:
        raise PublishedWeightsError(f"{tarball}: {exc}; {elsewhere(package)}") from exc
    source = {"package": package.spec, "integrity": package.integrity, "resource": package.resource,
              "onnx_sha256": hashlib.sha256(data).hexdigest(),
              "weights": "the package's fp16 ONNX weights as fp32, BatchNorm folded into the convs, "
                         "every BatchNorm the identity"}
    return save_refiner(model, out, source=source)


def _is_current(path: Path, package: PublishedPackage) -> bool:
    try:
        source = load_checkpoint(path).get("source") or {}
    except (CheckpointError, AttributeError):
        return False
    return isinstance(source, dict) and source.get("integrity") == package.integrity


def ensure_published_isnet(package: PublishedPackage = ISNET_GENERAL_USE, cache_dir: str | Path | None = None,
                           tarball: str | Path | None = None, force: bool = False, npm: str = "npm",
                           log: Callable[[str], None] | None = None) -> Path:
    """The converted checkpoint of ``package`` in the cache (:func:`published_checkpoint_path`), made if
    missing: from ``tarball`` when given, else fetched with ``npm pack`` into a temporary folder beside
    it (removed afterwards). Idempotent: a checkpoint converted from this package is kept as it is
    (``force`` converts again). ``log`` gets one line per step."""
    say = log or (lambda _msg: None)
    out = published_checkpoint_path(package, cache_dir)
    if not force and out.is_file() and _is_current(out, package):
        say(f"{package.spec}: already converted: {out}")
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    if tarball is not None:
        if not Path(tarball).is_file():
            raise PublishedWeightsError(f"tarball not found: {tarball}; {elsewhere(package)}")
        say(f"converting {tarball}")
        return convert_tarball(tarball, out, package)
    with tempfile.TemporaryDirectory(prefix="npm-pack-", dir=out.parent) as tmp:
        say(f"fetching {package.spec} with npm pack")
        fetched = npm_pack(package, tmp, npm=npm)
        say(f"checking and converting {fetched.name}")
        return convert_tarball(fetched, out, package)
