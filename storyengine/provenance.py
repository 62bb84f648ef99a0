"""C2PA content credentials: sign every clip and episode as AI-extended footage, and verify them.

storyengine extends stills of real people into clips, so each output carries a C2PA manifest that
says so (``c2pa.created`` with an IPTC digital source type, the source still or the clips as
ingredients, and ``org.storyengine.*`` assertions). Signing goes through c2pa-python's
``Builder``/``Signer``; files are rewritten atomically (temp file beside the target, checked, then
renamed), so a failed sign never leaves a truncated or half-signed file behind.

Without a configured key, a local *development* chain (self-made root CA + end-entity cert) is
created once and reused. Manifests signed with it say so, and :func:`verify` reports them as
``valid`` (the signature and hashes check out) but ``trusted=False``.
"""

from __future__ import annotations

import datetime as _dt
import fcntl
import json
import os
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import c2pa
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from . import __version__
from .errors import MediaError, StoryEngineError
from .settings import Settings
from .workspace import atomic_path
from .workspace import atomic_path, open_temp_beside

IPTC = "http://cv.iptc.org/newscodes/digitalsourcetype/"
TRAINED_ALGORITHMIC_MEDIA = IPTC + "trainedAlgorithmicMedia"
"""Generative back-ends (a trained model made the frames)."""
ALGORITHMIC_MEDIA = IPTC + "algorithmicMedia"
"""Weight-free back-ends: the motion is synthesised by an algorithm with no trained model.

Chosen over ``digitalCapture`` + ``c2pa.edited`` because the movement shown never happened (the
clip is not an edit of a capture), and over ``compositeWithTrainedAlgorithmicMedia`` because no
trained model is involved. The captured still stays visible as the ``inputTo`` ingredient."""
COMPOSITE_WITH_TRAINED_ALGORITHMIC_MEDIA = IPTC + "compositeWithTrainedAlgorithmicMedia"
"""An episode containing at least one clip made by a trained model."""
COMPOSITE_SYNTHETIC = IPTC + "compositeSynthetic"
"""An episode whose clips are all synthetic but none from a trained model."""

DEV_NOTICE = "signed with an untrusted development credential"
DEV_ORG = "storyengine development credential (untrusted)"
CREDENTIAL_LABEL = "org.storyengine.credential"
RENDER_LABEL = "org.storyengine.render"
EPISODE_LABEL = "org.storyengine.episode"

ALGORITHMS = ("es256", "ps256")

# Failure codes that say "we cannot vouch for who signed" but not "the bytes were altered".
# c2pa-rs emits signingCredential.untrusted when the chain is not on a trust list and keeps
# validation_state "Valid"; anything else in a failure list (assertion.bmffHash.mismatch,
# assertion.dataHash.mismatch, claimSignature.mismatch, signingCredential.invalid/expired/revoked,
# assertion.hashedURI.mismatch, ingredient.manifest.mismatch, ...) makes the file "invalid".
TRUST_ONLY_CODES = frozenset({"signingCredential.untrusted", "timeStamp.untrusted"})

_MIME = {".mp4": "video/mp4", ".m4v": "video/mp4", ".mov": "video/quicktime",
         ".png": "image/png", ".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".webp": "image/webp"}


# --------------------------------------------------------------------------------------------
# Credentials
# --------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Credential:
    """A signing certificate chain (end-entity first) and its private key, as PEM files."""

    cert_chain: Path
    private_key: Path
    algorithm: str = "es256"
    tsa_url: str | None = None
    development: bool = False

    @property
    def fingerprint(self) -> str:
        """SHA-256 of the end-entity certificate (DER), hex."""
        return _leaf(self.cert_chain).fingerprint(hashes.SHA256()).hex()


def _leaf(chain: Path) -> x509.Certificate:
    try:
        certs = x509.load_pem_x509_certificates(Path(chain).read_bytes())
    except (OSError, ValueError) as e:
        raise StoryEngineError(f"C2PA certificate chain {str(chain)!r} cannot be read: {e}") from None
    return certs[0]


def load_credential(cert: str | os.PathLike[str], key: str | os.PathLike[str], alg: str = "es256",
                    tsa: str | None = None, *, development: bool = False) -> Credential:
    """Check a configured chain + key and return them as a :class:`Credential`.

    Raises StoryEngineError naming the file when a file is unreadable, the key does not match the
    certificate, or the algorithm does not fit the key (es256 needs P-256, ps256 an RSA key).
    """
    cert_p, key_p = Path(cert).expanduser(), Path(key).expanduser()
    alg = (alg or "es256").lower()
    if alg not in ALGORITHMS:
        raise StoryEngineError(f"`c2pa_alg` must be one of {', '.join(ALGORITHMS)} but is {alg!r}")
    if tsa is not None and not str(tsa).startswith(("http://", "https://")):
        raise StoryEngineError(f"`c2pa_tsa_url` must be an http(s) URL but is {tsa!r}")
    leaf = _leaf(cert_p)
    try:
        priv = serialization.load_pem_private_key(key_p.read_bytes(), password=None)
    except (OSError, ValueError, TypeError) as e:
        raise StoryEngineError(f"C2PA private key {str(key_p)!r} cannot be read: {e}") from None
    pub = priv.public_key()
    if pub.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo) != \
            leaf.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo):
        raise StoryEngineError(f"C2PA private key {str(key_p)!r} does not belong to the certificate in {str(cert_p)!r}")
    if alg == "es256" and not (isinstance(priv, ec.EllipticCurvePrivateKey) and priv.curve.name == "secp256r1"):
        raise StoryEngineError(f"`c2pa_alg` es256 needs a P-256 EC key but {str(key_p)!r} is {type(priv).__name__}")
    if alg == "ps256" and not isinstance(priv, rsa.RSAPrivateKey):
        raise StoryEngineError(f"`c2pa_alg` ps256 needs an RSA key but {str(key_p)!r} is {type(priv).__name__}")
    return Credential(cert_p, key_p, alg, tsa or None, development)


def ensure_dev_credential(dir: Path) -> Credential:
    """Return the local development credential in ``dir``, creating it on first use.

    Files: ``dev-root.pem`` (the self-made root, usable as a local trust anchor),
    ``dev-chain.pem`` (end-entity + root) and ``dev-key.pem`` (mode 0600). A chain that no longer
    loads or has expired is replaced.
    """
    dir = Path(dir)
    chain, key = dir / "dev-chain.pem", dir / "dev-key.pem"
    dir.mkdir(parents=True, exist_ok=True)
    with open(dir / ".dev-credential.lock", "w") as lock:  # two renders starting at once make one chain
        fcntl.flock(lock, fcntl.LOCK_EX)
        if chain.is_file() and key.is_file():
            try:
                cred = load_credential(chain, key, "es256", None, development=True)
                if _leaf(chain).not_valid_after_utc > _dt.datetime.now(_dt.timezone.utc) + _dt.timedelta(days=1):
                    return cred
            except StoryEngineError:
                pass  # unreadable, mismatched or expiring: make a new one
        root_pem, chain_pem, key_pem = _make_dev_chain()
        _write_file(dir / "dev-root.pem", root_pem, 0o644)
        _write_file(key, key_pem, 0o600)
        _write_file(chain, chain_pem, 0o644)
        return load_credential(chain, key, "es256", None, development=True)


def _write_file(path: Path, data: bytes, mode: int) -> None:
    """Write atomically with ``mode`` less the umask; the temp file is created with that mode, so a
    0600 key is never briefly readable by others."""
    fd, tmp = open_temp_beside(path, mode=mode)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _make_dev_chain() -> tuple[bytes, bytes, bytes]:
    """A root CA and an end-entity cert meeting c2pa-rs's signing-certificate profile.

    c2pa-rs refuses self-signed signing certs and checks: X.509 v3, critical KeyUsage with
    digitalSignature, non-empty EKU with emailProtection or documentSigning (never anyEKU),
    BasicConstraints CA:false, AKI/SKI present, and that the cert is inside its validity period.
    """
    now = _dt.datetime.now(_dt.timezone.utc)
    org = x509.NameAttribute(NameOID.ORGANIZATION_NAME, DEV_ORG)
    root_key = ec.generate_private_key(ec.SECP256R1())
    ee_key = ec.generate_private_key(ec.SECP256R1())
    root_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "storyengine dev root CA"), org])
    ee_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "storyengine dev signer"), org])

    def usage(**on: bool) -> x509.KeyUsage:
        names = ("digital_signature", "content_commitment", "key_encipherment", "data_encipherment",
                 "key_agreement", "key_cert_sign", "crl_sign", "encipher_only", "decipher_only")
        return x509.KeyUsage(**{n: on.get(n, False) for n in names})

    root = (
        x509.CertificateBuilder().subject_name(root_name).issuer_name(root_name)
        .public_key(root_key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - _dt.timedelta(hours=1)).not_valid_after(now + _dt.timedelta(days=3650))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(usage(key_cert_sign=True, crl_sign=True), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(root_key.public_key()), critical=False)
        .sign(root_key, hashes.SHA256())
    )
    ee = (
        x509.CertificateBuilder().subject_name(ee_name).issuer_name(root_name)
        .public_key(ee_key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - _dt.timedelta(hours=1)).not_valid_after(now + _dt.timedelta(days=3 * 365))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(usage(digital_signature=True), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.EMAIL_PROTECTION]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ee_key.public_key()), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(root_key.public_key()), critical=False)
        .sign(root_key, hashes.SHA256())
    )
    pem = serialization.Encoding.PEM
    root_pem = root.public_bytes(pem)
    key_pem = ee_key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    return root_pem, ee.public_bytes(pem) + root_pem, key_pem


# --------------------------------------------------------------------------------------------
# Signing
# --------------------------------------------------------------------------------------------

def sign_clip(path: Path, *, credential: Credential, backend_id: str, model: str | None, seed: int,
              source_still: Path, digital_source_type: str, title: str, extra: dict | None = None) -> None:
    """Add a C2PA manifest to the clip at ``path`` (MP4/MOV), in place and atomically.

    Args:
        credential: from :func:`load_credential` or :func:`ensure_dev_credential`.
        backend_id, model, seed: recorded in the ``c2pa.created`` action and ``org.storyengine.render``.
        source_still: the photo the clip extends; added as an ``inputTo`` ingredient (with the
            SDK's thumbnail and hash), linked from the ``c2pa.created`` action.
        digital_source_type: an IPTC URL, normally :data:`TRAINED_ALGORITHMIC_MEDIA` (generative
            back-ends) or :data:`ALGORITHMIC_MEDIA` (weight-free motion).
        extra: more render facts (e.g. ``{"shot": "s01e02-sh03", "character": "ada"}``) for
            ``org.storyengine.render``.

    Raises MediaError naming the file when the clip or still is missing or signing fails; the
    original file is then left byte-identical.
    """
    path, source_still = Path(path), Path(source_still)
    if not source_still.is_file():
        raise MediaError(f"source still not found for {path}: {source_still}")
    params = {"backend": backend_id, "seed": int(seed)}
    if model is not None:
        params["model"] = model
    render = {**params, "model": model, "source_still": source_still.name, **(extra or {})}
    created = {
        "action": "c2pa.created",
        "digitalSourceType": digital_source_type,
        "softwareAgent": {"name": "storyengine", "version": __version__},
        "description": "AI-extended footage of a real person, made from a still photo",
        "parameters": {**params, "ingredientIds": ["source-still"]},
    }
    manifest = _manifest(title, path, credential, [created], [{"label": RENDER_LABEL, "data": _jsonable(render)}])
    ingredients = [({"title": source_still.name, "relationship": "inputTo", "label": "source-still"}, source_still)]
    _sign(path, manifest, ingredients, credential)


def credential_for(settings: Settings) -> Credential:
    """The configured C2PA credential, else the local development one (created on first use)."""
    if settings.c2pa_cert or settings.c2pa_key:
        if not (settings.c2pa_cert and settings.c2pa_key):
            raise StoryEngineError("set both c2pa_cert and c2pa_key (STORYENGINE_C2PA_CERT / STORYENGINE_C2PA_KEY), or neither")
        return load_credential(settings.c2pa_cert, settings.c2pa_key, settings.c2pa_alg, settings.c2pa_tsa_url or None)
    base = Path(settings.c2pa_dir).expanduser() if settings.c2pa_dir else \
        Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config") / "storyengine" / "c2pa"
    return ensure_dev_credential(base)


def sign_take(path: Path, plan: Any, backend: Any, credential: Credential, mood: str = "") -> None:
    """Sign a final take file: c2pa.created with the back-end's digital source type, model, seed, still.

    ``plan`` is the take's own plan (``plan.take`` is its 0-based number); the manifest is titled
    ``<shot_id> take K`` and records K, which is how an episode names the take as an ingredient.
    """
    model = getattr(getattr(backend, "options", None), "model", None)
    sign_clip(path, credential=credential, backend_id=plan.backend,
              model=str(model) if model else f"{backend.backend_id} {getattr(backend, 'version', '')}".strip(),
              seed=plan.seed, source_still=Path(plan.still),
              digital_source_type=getattr(backend, "digital_source_type", None) or TRAINED_ALGORITHMIC_MEDIA,
              title=take_title(plan.shot_id, plan.take + 1),
              extra={"series": plan.series, "episode": plan.episode_id, "shot": plan.shot_id, "take": plan.take + 1,
                     "characters": [c.handle for c in plan.characters], **({"mood": mood} if mood else {})})


def take_title(shot_id: str, take: int) -> str:
    """A take's manifest title, and its name as an episode's ingredient: ``<shot_id> take K`` (K from 1)."""
    return f"{shot_id} take {int(take)}"


class TakeSigner:
    """Signs the takes of one shot with one credential, loaded when the first new take needs it."""

    def __init__(self, backend: Any, settings: Settings) -> None:
        self.backend, self.settings = backend, settings
        self._credential: Credential | None = None

    def __call__(self, path: Path, plan: Any, mood: str = "") -> None:
        if self._credential is None:
            self._credential = credential_for(self.settings)
        sign_take(path, plan, self.backend, self._credential, mood)


def sign_episode(path: Path, *, credential: Credential, clips: list[Path], disclosure: str | None,
                 title: str, clip_titles: list[str] | None = None, left_out: list[str] | None = None,
                 human_decisions: list[dict] | None = None) -> None:
    """Add a C2PA manifest to a stitched episode, with every clip as a ``componentOf`` ingredient.

    The clips' own manifests travel along as ingredient manifests. The ``c2pa.created`` action
    says :data:`COMPOSITE_WITH_TRAINED_ALGORITHMIC_MEDIA` when any clip was made by a trained
    model (or its provenance is unknown), else :data:`COMPOSITE_SYNTHETIC`; each clip gets a
    ``c2pa.placed`` action. ``disclosure`` is the on-screen label text, or None when disabled.
    ``clip_titles`` names each clip's ingredient (e.g. ``"day-1-morning take 2"``; default: the
    file name). ``left_out`` lists the ids of the shots left out of the episode (every take
    rejected). ``clips`` may be empty only when ``left_out`` is not: the episode is then the title
    card alone, signed as :data:`COMPOSITE_SYNTHETIC` with no ingredients, and its manifest says
    that every shot was left out. ``human_decisions`` lists the takes a person chose over the
    checker (``{shot, take, action: use|accept, reason, at, source}``; storyengine.decisions).
    """
    path = Path(path)
    clips = [Path(c) for c in clips]
    left_out = list(left_out or [])
    if not clips and not left_out:
        raise MediaError(f"cannot sign episode {path}: no clips given")
    titles = list(clip_titles) if clip_titles is not None else [c.name for c in clips]
    if len(titles) != len(clips):
        raise MediaError(f"cannot sign episode {path}: {len(clips)} clips but {len(titles)} clip titles")
    for c in clips:
        if not c.is_file():
            raise MediaError(f"clip not found for episode {path}: {c}")
    sources = set()
    for c in clips:
        res = verify(c)
        if res.state == "invalid":  # never wrap a tampered clip in a fresh, valid signature
            raise MediaError(f"cannot sign episode {path}: clip {c} has invalid content credentials ({', '.join(res.codes)})")
        # An unsigned clip has unknown provenance: assume the stronger (trained model) disclosure.
        sources.update(res.digital_source_types or [TRAINED_ALGORITHMIC_MEDIA])
    dst = COMPOSITE_SYNTHETIC if sources <= {ALGORITHMIC_MEDIA} else COMPOSITE_WITH_TRAINED_ALGORITHMIC_MEDIA
    ids = [f"clip-{i:03d}" for i in range(len(clips))]
    if clips:
        description = "episode stitched from AI-extended clips of real people"
        if left_out:
            description += f"; shots left out (every take rejected): {', '.join(left_out)}"
    else:
        description = (f"title card only: every shot was left out (every take rejected): {', '.join(left_out)}; "
                       "no AI-extended clip is in this episode")
    actions = [{
        "action": "c2pa.created",
        "digitalSourceType": dst,
        "softwareAgent": {"name": "storyengine", "version": __version__},
        "description": description,
    }] + [{"action": "c2pa.placed", "parameters": {"ingredientIds": [i]}} for i in ids]
    episode = {
        "clips": titles,
        "files": [c.name for c in clips],
        "left_out": left_out,
        "title_only": not clips,
        "human_decisions": list(human_decisions or []),  # takes chosen by a person, not the checker (issue 15)
        "disclosure": {"mode": "disabled" if disclosure is None else "label", "text": disclosure},
    }
    manifest = _manifest(title, path, credential, actions, [{"label": EPISODE_LABEL, "data": _jsonable(episode)}])
    ingredients = [({"title": t, "relationship": "componentOf", "label": i}, c) for i, t, c in zip(ids, titles, clips)]
    _sign(path, manifest, ingredients, credential)


def _manifest(title: str, path: Path, cred: Credential, actions: list[dict], assertions: list[dict]) -> dict:
    generator: dict[str, Any] = {"name": "storyengine", "version": __version__}
    if cred.development:
        generator["org.storyengine.credential"] = DEV_NOTICE
    credential = {
        "development": cred.development,
        "note": DEV_NOTICE if cred.development else "signed with a configured credential",
    }
    return {
        "claim_generator_info": [generator],
        "title": title,
        "format": _mime(path),
        "assertions": [
            {"label": "c2pa.actions", "data": {"actions": actions}},
            *assertions,
            {"label": CREDENTIAL_LABEL, "data": credential},
        ],
    }


def _sign(path: Path, manifest: dict, ingredients: list[tuple[dict, Path]], cred: Credential) -> None:
    """Sign ``path`` into a temp file beside it, check the result reads back, then rename."""
    if not path.is_file():
        raise MediaError(f"cannot sign {path}: file not found")
    fmt = _mime(path)
    try:
        # C2paSignerInfo wants bytes (ctypes c_char_p), though its docstring says strings.
        chain, key = cred.cert_chain.read_bytes(), cred.private_key.read_bytes()
    except OSError as e:
        raise StoryEngineError(f"C2PA credential for {path} cannot be read: {e}") from None
    with atomic_path(path) as tmp:
        try:
            signer = c2pa.Signer.from_info(c2pa.C2paSignerInfo(cred.algorithm, chain, key, cred.tsa_url))
            with signer, c2pa.Builder(manifest) as builder:
                for ing_json, ing_path in ingredients:
                    with open(ing_path, "rb") as f:
                        builder.add_ingredient(ing_json, _mime(ing_path), f)
                with open(path, "rb") as src, open(tmp, "w+b") as dst:
                    builder.sign(signer, fmt, src, dst)
        except (c2pa.C2paError, ValueError, TypeError) as e:
            hint = f" (timestamp authority {cred.tsa_url})" if cred.tsa_url else ""
            raise MediaError(f"C2PA signing of {path} failed{hint}: {e}") from None
        except OSError as e:
            raise MediaError(f"C2PA signing of {path} failed: {e}") from None
        if tmp.stat().st_size == 0:
            raise MediaError(f"C2PA signing of {path} wrote an empty file")
        check = verify(tmp, fmt=fmt)
        if check.state == "missing" or check.title != manifest["title"]:
            raise MediaError(f"C2PA signing of {path} produced no readable manifest ({check.state})")
        shutil.copymode(path, tmp)


def _mime(path: Path) -> str:
    mime = _MIME.get(Path(path).suffix.lower())
    if mime is None:
        raise MediaError(f"cannot sign or read {path}: C2PA format for {Path(path).suffix!r} files is not known")
    return mime


def _jsonable(d: dict) -> dict:
    return json.loads(json.dumps(d, default=str))


# --------------------------------------------------------------------------------------------
# Verification
# --------------------------------------------------------------------------------------------

@dataclass
class Status:
    code: str
    explanation: str = ""
    url: str = ""
    kind: str = "failure"  # failure | informational | ingredient (recorded when the ingredient was added)


@dataclass
class VerifyResult:
    """What a file's content credentials say, and whether they hold.

    ``state``: "valid" (signature and hashes check out, possibly with an untrusted signer),
    "invalid" (an integrity, hash or signature failure) or "missing" (no manifest).
    """

    path: Path
    state: str
    trusted: bool = False
    development: bool = False
    title: str | None = None
    signer: str | None = None
    claim_generator: str | None = None
    actions: list[dict] = field(default_factory=list)
    ingredients: list[str] = field(default_factory=list)
    digital_source_types: list[str] = field(default_factory=list)
    render: dict | None = None
    episode: dict | None = None
    failures: list[Status] = field(default_factory=list)
    informational: list[Status] = field(default_factory=list)
    validation_state: str | None = None

    @property
    def codes(self) -> list[str]:
        return [s.code for s in self.failures]

    def to_dict(self) -> dict:
        d = asdict(self)
        d["path"] = str(self.path)
        return d

    def lines(self) -> list[str]:
        """Human-readable report, one fact per line (what ``storyengine verify`` prints)."""
        if self.state == "missing":
            return [f"{self.path}: no content credentials (C2PA manifest missing)"]
        trust = "trusted signer" if self.trusted else "untrusted signer"
        if self.development:
            trust += f" ({DEV_NOTICE})"
        out = [f"{self.path}: {self.state.upper()} — {trust}",
               f"  title: {self.title}", f"  signed by: {self.signer}"]
        for a in self.actions:
            bits = [a["action"]]
            if a.get("digitalSourceType"):
                bits.append(a["digitalSourceType"].rsplit("/", 1)[-1])
            params = {k: v for k, v in (a.get("parameters") or {}).items() if k not in ("ingredients", "ingredientIds")}
            if params:
                bits.append(", ".join(f"{k}={v}" for k, v in params.items()))
            out.append("  action: " + " · ".join(bits))
        out += [f"  ingredient: {t}" for t in self.ingredients]
        if self.episode is not None:
            disc = self.episode.get("disclosure") or {}
            out.append(f"  disclosure: {disc.get('text') if disc.get('mode') == 'label' else 'disabled'}")
            if self.episode.get("left_out"):
                every = " (every shot: title card only)" if self.episode.get("title_only") else ""
                out.append(f"  left out: {', '.join(self.episode['left_out'])}{every}")
            for d in self.episode.get("human_decisions") or []:  # issue 15: a person's choice, not the checker's
                out.append(f"  human decision: {d.get('shot')} {d.get('action')} take {d.get('take')}"
                           f"{' — ' + d['reason'] if d.get('reason') else ''}")
        out += [f"  {s.kind}: {s.code} — {s.explanation}" for s in self.failures]
        return out


def verify(path: Path, *, trust_anchors: Path | None = None, fmt: str | None = None) -> VerifyResult:
    """Read and validate the C2PA manifest store of ``path``.

    ``trust_anchors`` is an optional PEM bundle of root certificates to trust (e.g. an
    organisation's CA, or ``dev-root.pem`` for local checks); without it nothing is ``trusted``.
    Raises MediaError when the file is missing or of a kind C2PA cannot read.
    """
    path = Path(path)
    if not path.is_file():
        raise MediaError(f"cannot verify {path}: file not found")
    fmt = fmt or _mime(path)
    context = None
    try:
        if trust_anchors is not None:
            anchors = Path(trust_anchors).read_text()
            context = c2pa.Context(c2pa.Settings.from_dict(
                {"verify": {"verify_trust": True}, "trust": {"trust_anchors": anchors}}))
        with open(path, "rb") as f:
            reader = c2pa.Reader.try_create(fmt, f, None, context) if context else c2pa.Reader.try_create(fmt, f)
            if reader is None:
                return VerifyResult(path, "missing")
            with reader:
                store = json.loads(reader.json())
    except c2pa.C2paError.NotSupported as e:
        raise MediaError(f"cannot verify {path}: {e}") from None
    except c2pa.C2paError as e:
        # A manifest is there but cannot be parsed (corrupt JUMBF, broken claim): invalid, not missing.
        return VerifyResult(path, "invalid", failures=[Status("storyengine.unreadableManifest", str(e))])
    except OSError as e:
        raise MediaError(f"cannot verify {path}: {e}") from None
    finally:
        if context is not None:
            context.close()
    return _classify(path, store)


def _classify(path: Path, store: dict) -> VerifyResult:
    active = (store.get("manifests") or {}).get(store.get("active_manifest") or "", {})
    results = store.get("validation_results") or {}
    failures: list[Status] = []
    info: list[Status] = []

    def collect(deltas: dict, where: str = "") -> None:
        for s in deltas.get("failure") or []:
            failures.append(Status(s.get("code", "?"), where + s.get("explanation", ""), s.get("url", "")))
        for s in deltas.get("informational") or []:
            info.append(Status(s.get("code", "?"), where + s.get("explanation", ""), s.get("url", ""), "informational"))

    collect(results.get("activeManifest") or {})
    # Failures an ingredient already had when it was added (e.g. a clip's untrusted signer) are
    # reported, but only as informational: they say nothing about this file's own integrity.
    for ing in active.get("ingredients") or []:
        recorded = (ing.get("validation_results") or {}).get("activeManifest") or {}
        for s in recorded.get("failure") or []:
            info.append(Status(s.get("code", "?"), f"ingredient {ing.get('title')}: {s.get('explanation', '')}",
                               s.get("url", ""), "ingredient"))
    for d in results.get("ingredientDeltas") or []:
        collect(d.get("validationDeltas") or {}, "ingredient: ")
    if not results:  # older stores only carry validation_status (failures)
        for s in store.get("validation_status") or []:
            failures.append(Status(s.get("code", "?"), s.get("explanation", ""), s.get("url", "")))

    state_raw = store.get("validation_state")
    broken = [s for s in failures if s.code not in TRUST_ONLY_CODES]
    state = "invalid" if broken or state_raw == "Invalid" or not active else "valid"

    assertions = {a.get("label", ""): a.get("data") for a in active.get("assertions") or []}
    actions: list[dict] = []
    for label, data in assertions.items():
        if label.startswith("c2pa.actions"):
            actions += [a for a in (data or {}).get("actions", [])]
    cred = assertions.get(CREDENTIAL_LABEL) or {}
    gen = (active.get("claim_generator_info") or [{}])[0]
    sig = active.get("signature_info") or {}
    return VerifyResult(
        path=path,
        state=state,
        trusted=state == "valid" and state_raw == "Trusted",
        development=bool(cred.get("development")) or gen.get("org.storyengine.credential") == DEV_NOTICE
        or sig.get("issuer") == DEV_ORG,
        title=active.get("title"),
        signer=" / ".join(x for x in (sig.get("common_name"), sig.get("issuer")) if x) or None,
        claim_generator=" ".join(str(x) for x in (gen.get("name"), gen.get("version")) if x) or None,
        actions=actions,
        ingredients=[i.get("title", "?") for i in active.get("ingredients") or []],
        digital_source_types=[a["digitalSourceType"] for a in actions if a.get("digitalSourceType")],
        render=assertions.get(RENDER_LABEL),
        episode=assertions.get(EPISODE_LABEL),
        failures=failures,
        informational=info,
        validation_state=state_raw,
    )

