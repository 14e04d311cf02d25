"""The ``tensorseal`` command line. Errors become messages and exit codes in :func:`main` only.

Exit codes: 0 ok, 1 I/O error, 2 usage error, 3 malformed file, 4 no matching key,
5 authentication failure (tampered, corrupted, or not signed by a trusted signer),
6 wrong model (name, version or shard other than expected), 130 interrupted.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import sys
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import click

from . import __version__
from ._atomic import atomic_output
from .errors import (
    AuthenticationError,
    FormatError,
    KeyMaterialError,
    ModelMismatchError,
    TensorSealError,
    UsageError,
)
from .files import decrypt_file, encrypt_directory, encrypt_file, sign_file, verify_file
from .manifest import sign_directory, verify_directory
from .format.header import ModelIdentity
from .reader import SealedFile
from .recipients import (
    Identity,
    MasterKey,
    Passphrase,
    Recipient,
    SymmetricKey,
    X25519Identity,
    ambient_identities,
    load_identities,
    load_recipients,
    parse_recipient,
)
from .signing import SigningKey, VerifyingKey, load_trusted_signers
from .writer import SealOptions

SUFFIX = ".tseal"
EXIT_CODES: list[tuple[type[BaseException], int]] = [
    (UsageError, 2),
    (FormatError, 3),
    (KeyMaterialError, 4),
    (AuthenticationError, 5),
    (ModelMismatchError, 6),
    (TensorSealError, 1),
]
PASSPHRASE_ENV = "TENSORSEAL_PASSPHRASE"


# ---- helpers ---------------------------------------------------------------------------
def _passphrase(confirm: bool) -> str:
    env = os.environ.get(PASSPHRASE_ENV)
    if env:
        return env
    if not sys.stdin.isatty():
        raise UsageError("no passphrase: stdin is not a terminal", hint=f"set {PASSPHRASE_ENV}")
    return click.prompt("Passphrase", hide_input=True, confirmation_prompt=confirm, err=True)


@contextlib.contextmanager
def _progress(label: str, total: int, quiet: bool) -> Iterator[Callable[[int], None] | None]:
    """A rich progress bar on a terminal; nothing when quiet or not a TTY."""
    if quiet or not sys.stderr.isatty() or total == 0:
        yield None
        return
    from rich.progress import BarColumn, DownloadColumn, Progress, TimeRemainingColumn, TransferSpeedColumn

    columns = (label, BarColumn(), DownloadColumn(), TransferSpeedColumn(), TimeRemainingColumn())
    with Progress(*columns, transient=True) as bar:
        task = bar.add_task(label, total=total)
        yield lambda n: bar.update(task, advance=n)


def _note(quiet: bool, message: str) -> None:
    if not quiet:
        click.echo(message, err=True)


def _collect_identities(identity_files: Sequence[str], key_files: Sequence[str], passphrase: bool, path: str) -> list[Identity]:
    identities: list[Identity] = []
    for f in identity_files:
        identities.extend(load_identities(f))
    identities.extend(SymmetricKey.from_file(f) for f in key_files)
    identities.extend(_licence_identities())
    if not identities and not passphrase:  # like age: a passphrase file prompts by itself
        with SealedFile(path) as sealed:
            stanzas = sealed.header.recipients
        passphrase = any(s.type == "scrypt" for s in stanzas)
        if not passphrase:
            identities = ambient_identities(stanzas)  # key services named in the file: no flag needed
        if not identities and not passphrase:
            raise UsageError("no identity given", hint="pass -i IDENTITY_FILE, --key-file F or --passphrase")
    if passphrase:
        identities.append(Passphrase(_passphrase(confirm=False)))
    return identities


# ---- offline licences (--license on decrypt / verify / inspect / rewrap; docs/KEYS.md) ----
LICENCE_KEY_ENV = "TENSORSEAL_LICENSE_KEY"


def _store_option(ctx: click.Context, param: click.Parameter, value: Any) -> Any:
    """Callback of the licence options: keeps their values in the context, so that the
    commands sharing ``identity_options`` need no extra parameters."""
    ctx.meta[f"tensorseal.{param.name}"] = value
    return value


def _licence_given() -> bool:
    return click.get_current_context().meta.get("tensorseal.licence_file") is not None


def _licence_identities() -> list[Identity]:
    """The identity of --license BLOB --license-key K --vendor tsealpub1..., if given."""
    from .recipients.licence import LicenceIdentity

    meta = click.get_current_context().meta
    path, key, vendors = (meta.get(f"tensorseal.{n}") for n in ("licence_file", "licence_key", "vendor_keys"))
    if path is None:
        if key or vendors:
            raise UsageError("--license-key and --vendor go with --license")
        return []
    key = key or os.environ.get(LICENCE_KEY_ENV)
    if not key:
        raise UsageError("--license needs its licence key", hint=f"pass --license-key or set {LICENCE_KEY_ENV}")
    if not vendors:
        raise UsageError("--license needs the vendor's public key", hint="pass --vendor tsealpub1...")
    return [LicenceIdentity.from_file(path, key, trusted_vendors=vendors)]


def _write_key(text: str, output: str | None, force: bool) -> bool:
    """A key file's text to stdout, or durably to ``output`` (mode 0600, atomic).
    Returns whether a file was written. Raises UsageError if it exists without --force."""
    if output is None:
        click.echo(text, nl=False)
        return False
    _check_output(output, force)
    with atomic_output(output, durable=True) as fd:  # mkstemp: mode 0600
        os.write(fd, text.encode("utf-8"))
    return True


def _default_output(src: str, encrypting: bool) -> str:
    if encrypting:
        return src + SUFFIX
    if src.endswith(SUFFIX) and len(src) > len(SUFFIX):
        return src[: -len(SUFFIX)]
    raise UsageError(f"cannot guess the output name of {src!r}", hint="pass -o OUTPUT")


def _check_output(dst: str, force: bool) -> None:
    if os.path.exists(dst) and not force:
        raise UsageError(f"{dst} already exists", hint="pass --force to overwrite it")


quiet_option = click.option("-q", "--quiet", is_flag=True, help="No progress bar or summary.")
threads_option = click.option("--threads", type=int, default=None, help="Worker threads (default: cores; env TENSORSEAL_THREADS).")
force_option = click.option("-f", "--force", is_flag=True, help="Overwrite the output file if it exists.")
identity_options = [
    click.option("-i", "--identity", "identity_files", multiple=True, type=click.Path(dir_okay=False), help="Identity file (repeatable)."),
    click.option("--key-file", "key_files", multiple=True, type=click.Path(dir_okay=False), help="Raw 256-bit symmetric key file (repeatable)."),
    click.option("--passphrase", is_flag=True, help=f"Ask for a passphrase (or read {PASSPHRASE_ENV})."),
    click.option("--license", "--licence", "licence_file", type=click.Path(dir_okay=False, exists=True), expose_value=False, callback=_store_option, help="Device licence file (with --license-key and --vendor)."),
    click.option("--license-key", "--licence-key", "licence_key", expose_value=False, callback=_store_option, help=f"Licence key TSEAL-LICENCE-KEY-1... (or {LICENCE_KEY_ENV})."),
    click.option("--vendor", "vendor_keys", multiple=True, expose_value=False, callback=_store_option, help="Trusted licence vendor key tsealpub1... (repeatable)."),
]


signer_options = [
    click.option("--signer", "signer_keys", multiple=True, help="Trusted publisher key tsealpub1... (repeatable)."),
    click.option("--trusted-signers", "signer_files", multiple=True, type=click.Path(dir_okay=False, exists=True), help="File of trusted publisher keys, one per line."),
    click.option("--require-signature", is_flag=True, help="Refuse unsigned files (signers from --signer or TENSORSEAL_TRUSTED_SIGNERS)."),
    click.option("--expect-name", help="Refuse a file whose model name differs."),
    click.option("--expect-version", help="Refuse a file whose model version differs."),
    click.option("--min-version", help="Refuse a file older than this model version (PEP 440)."),
    click.option("--expect-file", help="Refuse a shard whose file id differs."),
]
sign_key_option = click.option("--sign-key", "sign_keys", multiple=True, type=click.Path(dir_okay=False, exists=True), help="Signing key file (repeatable).")


def _checks(
    signer_keys: Sequence[str], signer_files: Sequence[str], require_signature: bool,
    expect_name: str | None, expect_version: str | None, min_version: str | None, expect_file: str | None,
) -> dict[str, Any]:  # fmt: skip
    """The keyword arguments of the checks (tensorseal.checks) for the file functions."""
    keys = [VerifyingKey.parse(k) for k in signer_keys]
    for f in signer_files:
        keys.extend(load_trusted_signers(f))
    return {
        "signers": keys or None, "require_signature": require_signature, "expect_name": expect_name,
        "expect_version": expect_version, "min_version": min_version, "expect_file": expect_file,
    }  # fmt: skip


def _apply(options: list[Callable[[Any], Any]]) -> Callable[[Any], Any]:
    def decorate(f: Any) -> Any:
        for opt in reversed(options):
            f = opt(f)
        return f

    return decorate


# ---- commands ---------------------------------------------------------------------------
@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="tensorseal")
def cli() -> None:
    """Encrypt model weights at rest and load them without plaintext on disk."""


@cli.command()
@click.option("-o", "--output", type=click.Path(dir_okay=False), help="Write the new identity to this file.")
@click.option("-y", "to_public", type=click.Path(dir_okay=False, exists=True), help="Print the recipient of this identity file.")
@click.option("--symmetric", is_flag=True, help="Make a 256-bit symmetric key file instead of an X25519 identity.")
@click.option("--signing", is_flag=True, help="Make an Ed25519 publisher signing key instead.")
@force_option
def keygen(output: str | None, to_public: str | None, symmetric: bool, signing: bool, force: bool) -> None:
    """Make a new identity (or, with -y, print an identity or signing key's public key)."""
    if symmetric and signing:
        raise UsageError("choose --symmetric or --signing, not both")
    if to_public:
        with open(to_public, "rb") as f:
            is_signing = b"TSEAL-SIGNING-KEY-1" in f.read(4096)
        if is_signing:
            click.echo(str(SigningKey.from_file(to_public).public_key()))
            return
        recipients = [str(i.recipient()) for i in load_identities(to_public) if isinstance(i, X25519Identity)]
        if not recipients:
            raise UsageError(f"{to_public} holds no X25519 identity")
        click.echo("\n".join(recipients))
        return
    from datetime import datetime, timezone

    created = datetime.now(timezone.utc).replace(microsecond=0).isoformat()
    if symmetric:
        key = SymmetricKey.generate()
        text, public = f"# created: {created}\n# symmetric key: keep it secret\n{key}\n", None
    elif signing:
        skey = SigningKey.generate()
        public = str(skey.public_key())
        text = f"# created: {created}\n# public key: {public}\n{skey}\n"
    else:
        ident = X25519Identity.generate()
        public = str(ident.recipient())
        text = f"# created: {created}\n# recipient: {public}\n{ident}\n"
    if _write_key(text, output, force) and public:
        click.echo(f"Public key: {public}", err=True)


@cli.command()
@click.argument("input", type=click.Path(exists=True))
@click.option("-o", "--output", type=click.Path(), help=f"Output file (default: INPUT{SUFFIX}); for a directory, the output directory.")
@click.option("-r", "--recipient", "recipient_strings", multiple=True, help="Recipient string, e.g. tseal1... (repeatable).")
@click.option("-R", "--recipients-file", "recipient_files", multiple=True, type=click.Path(dir_okay=False, exists=True), help="File of recipients, one per line (repeatable).")
@click.option("--key-file", "key_files", multiple=True, type=click.Path(dir_okay=False, exists=True), help="Raw 256-bit symmetric key file (repeatable).")
@click.option("--master", "master_files", multiple=True, type=click.Path(dir_okay=False, exists=True), help="Model master key file, for licences (repeatable; default --name/--model-version: its model's).")
@click.option("--passphrase", is_flag=True, help=f"Encrypt to a passphrase (prompted, or {PASSPHRASE_ENV}).")
@click.option("--public-index", is_flag=True, help="Leave tensor names, dtypes and shapes readable (still authenticated).")
@click.option("--cipher", type=click.Choice(["aes-256-gcm", "chacha20-poly1305"]), default="aes-256-gcm", show_default=True)
@click.option("--mode", type=click.Choice(["auto", "tensors", "blob"]), default="auto", show_default=True, help="auto: safetensors files in tensor mode, anything else as a blob.")
@click.option("--segment-size", type=int, default=None, help="Bytes per authenticated segment (power of two, 4 KiB..64 MiB).")
@click.option("--name", help="Model name bound into the file.")
@click.option("--model-version", "--version", "model_version", help="Model version bound into the file.")
@click.option("--file-id", help="Shard file id bound into the file (e.g. model-00001-of-00004).")
@click.option("--seal-config", is_flag=True, help="With a directory: seal the other files too (config, tokenizer), not only the shards.")
@click.option("--encrypt-only", "encrypt_only", multiple=True, metavar="PATTERN", help="Encrypt only tensors whose names match this glob; the rest stay plain but authenticated (repeatable).")
@click.option("--plain", "plain", multiple=True, metavar="PATTERN", help="Leave tensors matching this glob unencrypted but authenticated (repeatable).")
@click.option("--critical", type=click.Choice(["auto"]), help="auto: encrypt the tensors a sensitivity analysis finds critical (needs --eval).")
@click.option("--eval", "evaluator", metavar="MODULE:FUNCTION", help="For --critical auto: evaluate(tensors) -> quality score, higher is better.")
@click.option("--critical-threshold", type=float, default=None, help="For --critical auto: fraction of the score the model must lose without the key (default 0.9).")
@sign_key_option
@force_option
@threads_option
@quiet_option
def encrypt(
    input: str, output: str | None, recipient_strings: tuple[str, ...], recipient_files: tuple[str, ...],
    key_files: tuple[str, ...], master_files: tuple[str, ...], passphrase: bool, public_index: bool, cipher: str, mode: str,
    segment_size: int | None, name: str | None, model_version: str | None, file_id: str | None,
    seal_config: bool, encrypt_only: tuple[str, ...], plain: tuple[str, ...], critical: str | None, evaluator: str | None,
    critical_threshold: float | None, sign_keys: tuple[str, ...], force: bool, threads: int | None, quiet: bool,
) -> None:  # fmt: skip
    """Seal INPUT (safetensors, or any file as a blob) for the given recipients. A model
    directory is sealed into -o OUTDIR: every *.safetensors shard under its own name,
    every other file copied. --encrypt-only/--plain/--critical encrypt some tensors only
    (see docs/SELECTIVE.md)."""
    recipients: list[Recipient] = [parse_recipient(r) for r in recipient_strings]
    for f in recipient_files:
        recipients.extend(load_recipients(f))
    recipients.extend(SymmetricKey.from_file(f) for f in key_files)
    masters = [MasterKey.from_file(f) for f in master_files]
    recipients.extend(masters)
    if len({(m.name, m.version) for m in masters}) == 1 and name is None and model_version is None:
        name, model_version = masters[0].name, masters[0].version
    if passphrase:
        if recipients:
            raise UsageError("--passphrase cannot be combined with other recipients")
        recipients.append(Passphrase(_passphrase(confirm=True)))
    if not recipients:
        raise UsageError("no recipients", hint="pass -r RECIPIENT, -R FILE, --key-file F or --passphrase")
    if critical:
        encrypt_only = _critical_selection(input, evaluator, critical_threshold, encrypt_only + plain, quiet)
    elif evaluator or critical_threshold is not None:
        raise UsageError("--eval and --critical-threshold go with --critical auto")
    options = SealOptions(
        cipher=cipher, public_index=public_index, identity=ModelIdentity(name=name, version=model_version, file=file_id),
        encrypt_only=encrypt_only, plain=plain, **({"segment_size": segment_size} if segment_size else {}),
    )  # fmt: skip
    if seal_config and not os.path.isdir(input):
        raise UsageError("--seal-config goes with a model directory")
    if os.path.isdir(input):
        if not output:
            raise UsageError("sealing a directory needs -o OUTDIR")
        sealed = encrypt_directory(input, output, recipients, options=options, threads=threads, sign_with=sign_keys,
                                   seal_config=seal_config)  # fmt: skip
        _note(quiet, f"sealed {len(sealed)} file(s) of {input} -> {output}")
        return
    output = output or _default_output(input, encrypting=True)
    _check_output(output, force)
    with _progress("encrypt", os.path.getsize(input), quiet) as progress:
        header = encrypt_file(
            input, output, recipients, mode=mode, options=options, threads=threads, progress=progress, sign_with=sign_keys
        )
    signed = f", signed by {len(sign_keys)} key(s)" if sign_keys else ""
    _note(quiet, f"sealed {input} -> {output} ({header.mode}, {header.cipher}, {len(header.recipients)} recipient(s){signed})")


def _critical_selection(
    input: str, evaluator: str | None, threshold: float | None, patterns: tuple[str, ...], quiet: bool
) -> tuple[str, ...]:
    """--critical auto: the exact names of the tensors to encrypt, from the user's evaluator."""
    from . import selection, sensitivity

    if patterns:
        raise UsageError("--critical auto chooses the tensors itself: drop --encrypt-only/--plain")
    if not evaluator:
        raise UsageError("--critical auto needs --eval MODULE:FUNCTION", hint="see docs/SELECTIVE.md")
    if os.path.isdir(input):
        raise UsageError("--critical auto works on one safetensors file, not a directory")
    evaluate = sensitivity.load_evaluator(evaluator)
    tensors = sensitivity.read_safetensors(input)
    kwargs = {} if threshold is None else {"threshold": threshold}
    chosen = sensitivity.critical_tensors(tensors, evaluate, **kwargs)
    lost = chosen.relative_degradation
    said = f"; without the key the model loses {min(lost, 1.0):.0%} of its score" if math.isfinite(lost) else ""
    _note(quiet, f"critical: encrypting {len(chosen.encrypt)} of {len(tensors)} tensors ({chosen.fraction:.2%} of the bytes){said}")
    if not chosen.reached:
        _note(quiet, f"critical: the threshold {chosen.threshold:g} was not reached: every tensor is encrypted")
    return selection.exact(chosen.encrypt)


@cli.command()
@click.argument("input", type=click.Path(dir_okay=False, exists=True))
@click.option("-o", "--output", type=click.Path(dir_okay=False), help=f"Output file (default: INPUT without {SUFFIX}).")
@_apply(identity_options)
@_apply(signer_options)
@force_option
@threads_option
@quiet_option
def decrypt(
    input: str, output: str | None, identity_files: tuple[str, ...], key_files: tuple[str, ...], passphrase: bool,
    signer_keys: tuple[str, ...], signer_files: tuple[str, ...], require_signature: bool, expect_name: str | None,
    expect_version: str | None, min_version: str | None, expect_file: str | None, force: bool, threads: int | None,
    quiet: bool,
) -> None:  # fmt: skip
    """Decrypt INPUT back to the original file, byte for byte."""
    output = output or _default_output(input, encrypting=False)
    _check_output(output, force)
    identities = _collect_identities(identity_files, key_files, passphrase, input)
    with SealedFile(input) as sealed:
        total = sealed.header.data_length
    with _progress("decrypt", total, quiet) as progress:
        checks = _checks(signer_keys, signer_files, require_signature, expect_name, expect_version, min_version, expect_file)
        decrypt_file(input, output, identities, threads=threads, progress=progress, **checks)
    _note(quiet, f"decrypted {input} -> {output}")


@cli.command()
@click.argument("input", type=click.Path(exists=True))
@_apply(identity_options)
@_apply(signer_options)
@click.option("--require-encrypted", is_flag=True, help="Refuse a plain (unsealed) file, or a directory with a plain shard.")
@threads_option
@quiet_option
def verify(
    input: str, identity_files: tuple[str, ...], key_files: tuple[str, ...], passphrase: bool,
    signer_keys: tuple[str, ...], signer_files: tuple[str, ...], require_signature: bool, expect_name: str | None,
    expect_version: str | None, min_version: str | None, expect_file: str | None, require_encrypted: bool,
    threads: int | None, quiet: bool,
) -> None:  # fmt: skip
    """Authenticate every byte of INPUT; writes nothing. With --signer (no key needed):
    a trusted publisher signed it. With -i: every tag verifies. Both may be given."""
    checks = _checks(signer_keys, signer_files, require_signature, expect_name, expect_version, min_version, expect_file)
    if os.path.isdir(input):
        if checks["signers"] is None:
            raise UsageError("verifying a directory needs --signer or --trusted-signers")
        result = verify_directory(input, checks["signers"], threads=threads, require_encrypted=require_encrypted)
        _note(quiet, f"ok: {input}: {len(result.files)} file(s) match the manifest signed by a trusted signer")
        return
    signers = checks["signers"] or (True if require_signature else None)
    identities = None
    if identity_files or key_files or passphrase or signers is None or _licence_given():
        identities = _collect_identities(identity_files, key_files, passphrase, input)
    with SealedFile(input) as sealed:
        total = sealed.header.data_length
    with _progress("verify", total, quiet) as progress:
        header = verify_file(input, identities, threads=threads, progress=progress, **checks)
    done = []
    if signers is not None:
        done.append("signature from a trusted signer")
    if identities is not None:
        done.append(f"header, index and {header.segment_count} segment(s)")
    _note(quiet, f"ok: {input}: {' and '.join(done)} verified")


@cli.command()
@click.argument("input", type=click.Path(exists=True))
@click.option("--sign-key", "sign_keys", multiple=True, required=True, type=click.Path(dir_okay=False, exists=True), help="Signing key file (repeatable).")
@threads_option
@quiet_option
def sign(input: str, sign_keys: tuple[str, ...], threads: int | None, quiet: bool) -> None:
    """Sign a sealed file, or write a signed manifest of a model directory (no decryption
    key needed)."""
    if os.path.isdir(input):
        path = sign_directory(input, sign_keys, threads=threads)
        _note(quiet, f"signed {input}: wrote {path}")
        return
    signatures = sign_file(input, sign_keys, threads=threads)
    _note(quiet, f"signed {input}: {len(signatures)} signature(s)")


new_recipient_options = [  # rewrap (without --add: the new set) and rekey
    click.option("-r", "--recipient", "recipient_strings", multiple=True, help="New recipient (repeatable)."),
    click.option("-R", "--recipients-file", "recipient_files", multiple=True, type=click.Path(dir_okay=False, exists=True), help="File of new recipients (repeatable)."),
    click.option("--to-key-file", "to_key_files", multiple=True, type=click.Path(dir_okay=False, exists=True), help="New recipient: a raw symmetric key file (repeatable)."),
]


def _recipients_from(recipient_strings: Sequence[str], recipient_files: Sequence[str], key_files: Sequence[str]) -> list[Recipient]:
    recipients: list[Recipient] = [parse_recipient(r) for r in recipient_strings]
    for f in recipient_files:
        recipients.extend(load_recipients(f))
    recipients.extend(SymmetricKey.from_file(f) for f in key_files)
    return recipients


@cli.command()
@click.argument("input", type=click.Path(dir_okay=False, exists=True))
@_apply(identity_options)
@_apply(new_recipient_options)
@click.option("--add", is_flag=True, help="Keep the file's recipients and add the -r ones.")
@click.option("--remove", "remove_strings", multiple=True, metavar="RECIPIENT", help="Remove the stanzas of this key-service recipient (e.g. awskms:ARN; repeatable).")
@click.option("--remove-identity", "remove_files", multiple=True, type=click.Path(dir_okay=False, exists=True), help="Remove the stanzas that this identity file opens (X25519, symmetric; repeatable).")
@quiet_option
def rewrap(
    input: str, identity_files: tuple[str, ...], key_files: tuple[str, ...], passphrase: bool,
    recipient_strings: tuple[str, ...], recipient_files: tuple[str, ...], to_key_files: tuple[str, ...], add: bool,
    remove_strings: tuple[str, ...], remove_files: tuple[str, ...], quiet: bool,
) -> None:  # fmt: skip
    """Change who can open INPUT without touching its data: add or remove recipients, or
    rotate a key-encryption key (re-wrap to the key's latest version). Opens with -i (or
    the key services the file names); crash-safe and in place. Signatures are removed:
    sign again with `tensorseal sign`."""
    from .rotation import rewrap as do_rewrap

    new = _recipients_from(recipient_strings, recipient_files, to_key_files)
    remove: list[Any] = [parse_recipient(r) for r in remove_strings]
    for f in remove_files:
        remove.extend(load_identities(f))
    identities = _collect_identities(identity_files, key_files, passphrase, input)
    if add and not new:
        raise UsageError("--add needs recipients", hint="pass -r RECIPIENT")
    replace = new if new and not add else None
    if replace is not None and remove:
        raise UsageError("-r without --add replaces every recipient: --remove is not needed")
    result = do_rewrap(input, identities, recipients=replace, add=new if add else (), remove=remove)
    how = "in place" if result.in_place else "by copying the file (the header outgrew its slot)"
    dropped = f"; {result.dropped_signatures} signature(s) removed, sign again" if result.dropped_signatures else ""
    _note(quiet, f"rewrapped {input} {how}: {result.kept} kept, {result.added} added, {result.removed} removed{dropped}")


@cli.command()
@click.argument("input", type=click.Path(dir_okay=False, exists=True))
@_apply(identity_options)
@_apply(new_recipient_options)
@click.option("-o", "--output", type=click.Path(dir_okay=False), help="Write here instead of replacing INPUT.")
@sign_key_option
@threads_option
@quiet_option
def rekey(
    input: str, identity_files: tuple[str, ...], key_files: tuple[str, ...], passphrase: bool,
    recipient_strings: tuple[str, ...], recipient_files: tuple[str, ...], to_key_files: tuple[str, ...],
    output: str | None, sign_keys: tuple[str, ...], threads: int | None, quiet: bool,
) -> None:  # fmt: skip
    """Re-encrypt INPUT under a new file key for the given recipients (after a key
    compromise): streams every segment, bounded memory, replaces the file only when done."""
    from .rotation import rekey as do_rekey

    recipients = _recipients_from(recipient_strings, recipient_files, to_key_files)
    if not recipients:
        raise UsageError("no recipients", hint="pass -r RECIPIENT, -R FILE or --to-key-file F")
    identities = _collect_identities(identity_files, key_files, passphrase, input)
    header = do_rekey(input, identities, recipients, output=output, threads=threads, sign_with=sign_keys)
    _note(quiet, f"rekeyed {input} -> {output or input}: new file key, {header.segment_count} segment(s) re-encrypted")


@cli.command()
@click.argument("input", type=click.Path(dir_okay=False, exists=True))
@_apply(identity_options)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def inspect(input: str, identity_files: tuple[str, ...], key_files: tuple[str, ...], passphrase: bool, as_json: bool) -> None:
    """Show the format, cipher, recipients and sizes (and tensors, when public or unlocked)."""
    with SealedFile(input) as sealed:
        h = sealed.header
        info: dict[str, Any] = {
            "file": input,
            "format_version": 1,
            "mode": h.mode,
            "cipher": h.cipher,
            "segment_size": h.segment_size,
            "recipients": [s.type for s in h.recipients],
            "identity": h.identity.to_json(),
            "file_size": h.file_size,
            "data_length": h.data_length,
            "segments": h.segment_count,
            "plain_tensors": len(h.plain),
            "index": "encrypted" if h.index_encrypted else ("public" if h.mode == "tensors" else "none"),
            "signed_by": [str(VerifyingKey(s.key)) for s in sealed.signatures],
            "authenticated": False,
        }
        index = None
        if identity_files or key_files or passphrase or _licence_given():
            sealed.unlock(_collect_identities(identity_files, key_files, passphrase, input))
            info["authenticated"] = True
            index = sealed.index if h.mode == "tensors" else None
        else:
            index = sealed.public_index()
        if index is not None:
            info["metadata"] = index.metadata
            plain = set(h.plain)
            info["tensors"] = [
                {"name": e.name, "dtype": e.dtype, "shape": list(e.shape), "bytes": e.nbytes, "encrypted": i not in plain}
                for i, e in enumerate(index.entries)
            ]
    if as_json:
        click.echo(json.dumps(info, indent=2))
        return
    _print_inspect(info)


def _print_inspect(info: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console()
    for key in ("file", "format_version", "mode", "cipher", "segment_size", "file_size", "data_length", "segments", "index", "plain_tensors"):
        console.print(f"[bold]{key}[/bold]: {info[key]}")
    console.print(f"[bold]recipients[/bold]: {', '.join(info['recipients'])}")
    if info["signed_by"]:
        console.print(f"[bold]signed by[/bold] (not checked; use verify --signer): {', '.join(info['signed_by'])}")
    if info["identity"]:
        console.print(f"[bold]model[/bold]: {info['identity']}")
    if "tensors" in info:
        note = "authenticated" if info["authenticated"] else "public, not authenticated without a key"
        table = Table(title=f"{len(info['tensors'])} tensors ({note})")
        for col in ("name", "dtype", "shape", "bytes", "stored"):
            table.add_column(col)
        for t in info["tensors"]:
            table.add_row(t["name"], t["dtype"], str(t["shape"]), str(t["bytes"]), "encrypted" if t["encrypted"] else "plain")
        console.print(table)
        if info.get("metadata"):
            console.print(f"[bold]metadata[/bold]: {info['metadata']}")


@cli.command("device-id")
def device_id() -> None:
    """Print this device's fingerprint (tsealdev1...), for a licence. It is derived from
    the machine id (Linux machine-id, macOS IOPlatformUUID, Windows MachineGuid), which it
    does not reveal."""
    from .device import this_device

    click.echo(str(this_device()))


@cli.group("license")
def license_group() -> None:
    """Offline device licences: model master keys and licence files (docs/KEYS.md)."""


@license_group.command("new-master")
@click.option("-o", "--output", type=click.Path(dir_okay=False), help="Write the master key to this file (default: stdout).")
@click.option("--name", "--model", "name", required=True, help="Model name the key seals.")
@click.option("--model-version", "--version", "model_version", required=True, help="Model version the key seals.")
@force_option
def license_new_master(output: str | None, name: str, model_version: str, force: bool) -> None:
    """Make a model master key (MCK) for one model version: seal with `encrypt --master`,
    issue licences with `license issue --master`."""
    from datetime import datetime, timezone

    from .recipients.master import MasterKey

    mck = MasterKey.generate(name, model_version)
    created = datetime.now(timezone.utc).replace(microsecond=0).isoformat()
    text = (
        f"# created: {created}\n# master key of model {name!r} version {model_version!r}, key id {mck.key_id.hex()}\n"
        f"# keep it secret: it opens every file sealed to it\n{mck}\n"
    )
    if _write_key(text, output, force):
        click.echo(f"Master key id: {mck.key_id.hex()}", err=True)


@license_group.command("issue")
@click.option("--master", "master_file", required=True, type=click.Path(dir_okay=False, exists=True), help="The model version's master key file.")
@click.option("--sign-key", "sign_key", required=True, type=click.Path(dir_okay=False, exists=True), help="The vendor's signing key file (TSEAL-SIGNING-KEY-1...).")
@click.option("--licensee", required=True, help="Who the licence is for (printed on errors; not secret).")
@click.option("--device", required=True, help="The device's fingerprint, tsealdev1... (from `tensorseal device-id` on it).")
@click.option("--expires", required=True, help="Expiry in UTC: YYYY-MM-DD (midnight) or an ISO 8601 time.")
@click.option("--licence-key", "--license-key", "licence_key", help="Reuse this licence key (default: a new one, printed on stdout).")
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False), help="The licence file to write.")
@force_option
@quiet_option
def license_issue(
    master_file: str, sign_key: str, licensee: str, device: str, expires: str, licence_key: str | None,
    output: str, force: bool, quiet: bool,
) -> None:  # fmt: skip
    """Issue a licence: the master key wrapped for one device and licence key, signed by
    the vendor. Prints the new licence key (give it to the customer with the file)."""
    from datetime import datetime

    from .recipients.licence import issue_licence
    from .recipients.master import MasterKey

    try:
        expiry = datetime.fromisoformat(expires)
    except ValueError:
        raise UsageError(f"--expires {expires!r} is not a date", hint="use YYYY-MM-DD or YYYY-MM-DDTHH:MM:SSZ") from None
    _check_output(output, force)
    issued = issue_licence(
        MasterKey.from_file(master_file), SigningKey.from_file(sign_key),
        licensee=licensee, device=device, expires=expiry, licence_key=licence_key,
    )  # fmt: skip
    with atomic_output(output, durable=True) as fd:
        os.write(fd, issued.blob)
    if licence_key is None:
        click.echo(str(issued.licence_key))
    lic = issued.licence
    _note(quiet, f"issued licence {lic.licence_id.hex()} for {lic.licensee!r}: {lic.model.name} {lic.model.version}, expires {lic.expires.isoformat()} -> {output}")


# ---- object storage (S3; docs/SERVING.md) ------------------------------------------------
s3_transfer_options = [
    click.option("--part-size", type=int, default=16, show_default=True, help="Multipart part size in MiB (5..5120; raised for files over 10,000 parts)."),
    click.option("--concurrency", type=int, default=8, show_default=True, help="Parts transferred at once."),
]


@cli.command("push")
@click.argument("input", type=click.Path(dir_okay=False, exists=True))
@click.argument("url")
@click.option("--sse-kms", "sse_kms_key", metavar="KEY", help="Have S3 encrypt the object with SSE-KMS under KEY (for a bucket without SSE-KMS default encryption).")
@_apply(signer_options)
@_apply(s3_transfer_options)
@threads_option
@quiet_option
def push_command(
    input: str, url: str, sse_kms_key: str | None, signer_keys: tuple[str, ...], signer_files: tuple[str, ...],
    require_signature: bool, expect_name: str | None, expect_version: str | None, min_version: str | None,
    expect_file: str | None, part_size: int, concurrency: int, threads: int | None, quiet: bool,
) -> None:  # fmt: skip
    """Upload the sealed file INPUT to URL (s3://BUCKET/KEY; a KEY ending in / gets INPUT's
    name). A file that is not sealed is refused: no plaintext goes up. With --signer or
    --require-signature, only a file signed by a trusted publisher. Credentials, region and
    endpoint come from the environment (AWS_PROFILE, AWS_REGION, AWS_ENDPOINT_URL_S3)."""
    from .s3 import push as do_push

    checks = _checks(signer_keys, signer_files, require_signature, expect_name, expect_version, min_version, expect_file)
    with _progress("upload", os.path.getsize(input), quiet) as progress:
        result = do_push(
            input, url, sse_kms_key=sse_kms_key, part_size=part_size << 20, concurrency=concurrency,
            threads=threads, progress=progress, **checks,
        )  # fmt: skip
    if result.bucket_default_kms is False and not sse_kms_key:
        click.echo(
            f"tensorseal: warning: s3://{result.url.bucket} has no SSE-KMS default encryption; pass --sse-kms KEY "
            f"or run `tensorseal audit-bucket s3://{result.url.bucket} --fix --kms-key KEY`", err=True,
        )  # fmt: skip
    sse = f"{result.sse} {result.kms_key or ''}".strip() if result.sse else "no server-side encryption reported"
    _note(quiet, f"pushed {input} -> {result.url} ({result.size} bytes, {result.parts} part(s), {sse})")


https_options = [  # the client side of `tensorseal serve` (pull https://..., activate); docs/SERVING.md
    click.option("--cert", type=click.Path(dir_okay=False, exists=True), help="https: client certificate (PEM)."),
    click.option("--key", type=click.Path(dir_okay=False, exists=True), help="https: the client certificate's private key (PEM)."),
    click.option("--ca", type=click.Path(dir_okay=False, exists=True), help="https: CA certificate(s) the server's certificate must chain to."),
]


@cli.command("pull")
@click.argument("url")
@click.option("-o", "--output", type=click.Path(dir_okay=False), help="Output file (default: the key's last part, here).")
@_apply(identity_options)
@_apply(signer_options)
@click.option("--no-resume", is_flag=True, help="Start over even if an interrupted pull left OUTPUT.partial.")
@_apply(s3_transfer_options)
@_apply(https_options)
@force_option
@threads_option
@quiet_option
def pull_command(
    url: str, output: str | None, identity_files: tuple[str, ...], key_files: tuple[str, ...], passphrase: bool,
    signer_keys: tuple[str, ...], signer_files: tuple[str, ...], require_signature: bool, expect_name: str | None,
    expect_version: str | None, min_version: str | None, expect_file: str | None, no_resume: bool, part_size: int,
    concurrency: int, cert: str | None, key: str | None, ca: str | None, force: bool, threads: int | None, quiet: bool,
) -> None:  # fmt: skip
    """Download the sealed object at URL (s3://BUCKET/KEY, or https://HOST/models/NAME/VERSION
    from `tensorseal serve`, with --cert/--key/--ca) to OUTPUT. OUTPUT appears only once the
    file checked out: sealed and of consistent size, its digest, with --signer a trusted
    publisher signature (no key needed), with -i every tag. An interrupted pull leaves
    OUTPUT.partial, and the next pull resumes it if the file did not change."""
    from .s3 import object_size, parse_url
    from .s3 import pull as do_pull

    checks = _checks(signer_keys, signer_files, require_signature, expect_name, expect_version, min_version, expect_file)
    if url.startswith(("https://", "http://")):
        _pull_https(url, output, identity_files, key_files, passphrase, checks, no_resume, cert, key, ca, force, threads, quiet)
        return
    if cert or key or ca:
        raise UsageError("--cert, --key and --ca go with https:// URLs")
    target = parse_url(url)
    name = target.key.rsplit("/", 1)[-1]
    if output is None and name in ("", ".", ".."):
        raise UsageError(f"cannot guess the output name of {url!r}", hint="pass -o OUTPUT")
    output = output or name
    _check_output(output, force)
    identities = None
    if identity_files or key_files or passphrase or _licence_given():
        identities = _collect_identities(identity_files, key_files, passphrase, output)
    with _progress("download", object_size(target) if not quiet and sys.stderr.isatty() else 0, quiet) as progress:
        result = do_pull(
            target, output, identities=identities, part_size=part_size << 20, concurrency=concurrency,
            threads=threads, progress=progress, resume=not no_resume, **checks,
        )  # fmt: skip
    done = ["sealed file, size"]
    done += ["digest"] if result.digest_checked else []
    done += ["signature from a trusted signer"] if result.signature_checked else []
    done += [f"{result.header.segment_count} segment tag(s)"] if result.tags_checked else []
    resumed = f", resumed after {result.resumed_bytes}" if result.resumed_bytes else ""
    _note(quiet, f"pulled {result.url} -> {output} ({result.size} bytes{resumed}): {', '.join(done)} verified")


@cli.command("audit-bucket")
@click.argument("url")
@click.option("--fix", is_flag=True, help="Apply the fixes, then check again.")
@click.option("--kms-key", metavar="KEY", help="With --fix: the KMS key for SSE-KMS default encryption (id, ARN or alias/NAME).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def audit_bucket_command(url: str, fix: bool, kms_key: str | None, as_json: bool) -> None:
    """Check how bucket URL (s3://BUCKET) protects sealed files: SSE-KMS default
    encryption, bucket key, a policy denying non-KMS puts and plain HTTP, public access
    block, versioning. Exits non-zero if any check FAILs."""
    from .errors import BucketAuditError
    from .s3 import FAIL, audit_bucket, fix_bucket, parse_url

    target = parse_url(url)
    if target.key not in ("",):
        raise UsageError(f"{url} names an object: audit-bucket takes s3://BUCKET")
    if kms_key and not fix:
        raise UsageError("--kms-key goes with --fix")
    fixed = fix_bucket(target.bucket, kms_key=kms_key) if fix else []
    checks = audit_bucket(target.bucket)
    failing = [c.name for c in checks if c.status == FAIL]
    if as_json:
        report = {"bucket": target.bucket, "ok": not failing, "fixed": fixed, "checks": [c.to_json() for c in checks]}
        click.echo(json.dumps(report, indent=2))
    else:
        from rich.console import Console
        from rich.table import Table

        for line in fixed:
            click.echo(f"fixed: {line}", err=True)
        table = Table(title=f"s3://{target.bucket}")
        for col in ("check", "status", "detail", "fix"):
            table.add_column(col, overflow="fold", no_wrap=col in ("check", "status"))
        style = {"PASS": "green", "WARN": "yellow", "FAIL": "bold red"}
        for c in checks:
            table.add_row(c.name, f"[{style[c.status]}]{c.status}[/]", c.detail, c.fix)
        Console().print(table)
    if failing:
        hint = "see the fix column" if fix else f"run `tensorseal audit-bucket s3://{target.bucket} --fix --kms-key KEY`"
        raise BucketAuditError(f"s3://{target.bucket}: {len(failing)} check(s) fail: {', '.join(failing)}", hint=hint)


# ---- the HTTPS server and its clients (docs/SERVING.md) -----------------------------------
def _pull_https(
    url: str, output: str | None, identity_files: Sequence[str], key_files: Sequence[str], passphrase: bool,
    checks: dict[str, Any], no_resume: bool, cert: str | None, key: str | None, ca: str | None, force: bool,
    threads: int | None, quiet: bool,
) -> None:  # fmt: skip
    """`tensorseal pull https://HOST/models/NAME/VERSION` (tensorseal.client.pull)."""
    from .client import parse_model_url
    from .client import pull as do_pull

    target = parse_model_url(url)
    if ca is None:
        raise UsageError("https:// needs --ca (the server's CA certificate)", hint="with --cert and --key: the client certificate")
    output = output or f"{target.name}-{target.version}{SUFFIX}"
    _check_output(output, force)
    identities = None
    if identity_files or key_files or passphrase or _licence_given():
        identities = _collect_identities(identity_files, key_files, passphrase, output)
    bar = contextlib.ExitStack()
    state: dict[str, Any] = {}

    def progress(n: int) -> None:  # the size is known only once the manifest is read
        if "advance" not in state:
            state["advance"] = bar.enter_context(_progress("download", state.get("total", 0), quiet))
        if state["advance"] is not None:
            state["advance"](n)

    with bar:
        show = not quiet and sys.stderr.isatty()
        if show:
            from .client import _http, _manifest
            from .tls import client_context

            with _http(client_context(cert, key, ca), 60.0) as http:
                state["total"] = _manifest(http, target)[2].size
        result = do_pull(
            target, output, cert=cert, key=key, ca=ca, identities=identities, threads=threads,
            progress=progress if show else None, resume=not no_resume, **checks,
        )  # fmt: skip
    done = ["sealed file, size, manifest digest"]
    done += ["BLAKE3"] if result.digest_checked else []
    done += [f"publisher signature ({result.signed_by})"] if result.signature_checked else []
    done += [f"{result.header.segment_count} segment tag(s)"] if result.tags_checked else []
    resumed = f", resumed after {result.resumed_bytes}" if result.resumed_bytes else ""
    _note(quiet, f"pulled {result.url} -> {output} ({result.size} bytes{resumed}): {', '.join(done)} verified")


@cli.command("serve")
@click.option("--models", required=True, type=click.Path(file_okay=False, exists=True), help="Directory of sealed models (each file's --name/--model-version names it).")
@click.option("--cert", required=True, type=click.Path(dir_okay=False, exists=True), help="Server certificate (PEM).")
@click.option("--key", required=True, type=click.Path(dir_okay=False, exists=True), help="Server private key (PEM).")
@click.option("--client-ca", required=True, type=click.Path(dir_okay=False, exists=True), help="CA certificate(s) client certificates must chain to.")
@click.option("--db", help="Licence database URL: sqlite:///PATH (default: $TENSORSEAL_DB, else ./tensorseal-licences.sqlite3) or postgresql://...")
@click.option("--listen", default="127.0.0.1:8443", show_default=True, help="HOST:PORT to listen on (port 0: any free port).")
@click.option("--sign-key", "sign_keys", multiple=True, type=click.Path(dir_okay=False, exists=True), help="Vendor signing key: signs manifests and licences (repeatable; the first signs licences).")
@click.option("--master", "master_files", multiple=True, type=click.Path(dir_okay=False, exists=True), help="Master key of a model version whose licences this server activates (repeatable).")
@click.option("--licence-days", "--license-days", "licence_days", type=int, default=30, show_default=True, help="An activated licence blob expires after this many days (or with its licence): renewals re-check revocation.")
@click.option("--max-failures", type=int, default=10, show_default=True, help="Failed activations per client certificate before it must wait...")
@click.option("--failure-window", type=int, default=600, show_default=True, help="...this many seconds.")
@click.option("--audit-log", type=click.Path(dir_okay=False), help="Append audit records here (default: $TENSORSEAL_AUDIT_LOG).")
@threads_option
def serve_command(
    models: str, cert: str, key: str, client_ca: str, db: str | None, listen: str, sign_keys: tuple[str, ...],
    master_files: tuple[str, ...], licence_days: int, max_failures: int, failure_window: int, audit_log: str | None,
    threads: int | None,
) -> None:  # fmt: skip
    """Serve the sealed models under --models over HTTPS (TLS 1.3 only, client
    certificates from --client-ca required): GET /models/NAME/VERSION (Range, ETag),
    /models/NAME/VERSION/manifest (signed with --sign-key), and with --master and
    --sign-key, POST /activate for licences in --db (`tensorseal license add`)."""
    from . import audit
    from .server.app import ServerConfig, announce, run

    if audit_log:
        audit.configure(audit_log)
    config = ServerConfig(
        models=models, cert=cert, key=key, client_ca=client_ca, db=db, listen=listen,
        sign_keys=[SigningKey.from_file(k) for k in sign_keys], masters=[MasterKey.from_file(m) for m in master_files],
        licence_days=licence_days, max_failures=max_failures, failure_window=failure_window, threads=threads,
    )  # fmt: skip
    run(config, ready=announce)


@cli.command("dev-certs")
@click.argument("directory", type=click.Path(file_okay=False))
@click.option("--days", type=int, default=90, show_default=True, help="Validity of the certificates.")
@click.option("--client-name", default="tensorseal-dev-client", show_default=True, help="Common name of the client certificate.")
@force_option
def dev_certs_command(directory: str, days: int, client_name: str, force: bool) -> None:
    """Make a throwaway CA, a server certificate for 127.0.0.1/localhost and a client
    certificate in DIRECTORY, to try `tensorseal serve` on one machine. Not for production."""
    from .tls import make_dev_certs

    certs = make_dev_certs(directory, days=days, client_name=client_name, force=force)
    click.echo(f"wrote {certs.ca} (CA), {certs.server_cert} + {certs.server_key} (server), "
               f"{certs.client_cert} + {certs.client_key} (client); keys are mode 0600", err=True)  # fmt: skip


@cli.command("activate")
@click.argument("url")
@click.option("--license-key", "--licence-key", "licence_key", help=f"Licence key TSEAL-LICENCE-KEY-1... (or {LICENCE_KEY_ENV}).")
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False), help="The licence file to write.")
@click.option("--device", help="Device fingerprint tsealdev1... (default: this device's, `tensorseal device-id`).")
@click.option("--vendor", "vendor_keys", multiple=True, help="Trusted vendor key tsealpub1...: the licence must be signed by it (repeatable).")
@_apply(https_options)
@force_option
@quiet_option
def activate_command(
    url: str, licence_key: str | None, output: str, device: str | None, vendor_keys: tuple[str, ...],
    cert: str | None, key: str | None, ca: str | None, force: bool, quiet: bool,
) -> None:  # fmt: skip
    """Activate a licence on this device at the server URL (https://HOST[:PORT]) and write
    the licence file. The licence is checked before it is written: it opens on this
    device with the licence key (and, with --vendor, is signed by a trusted vendor)."""
    from .client import activate

    licence_key = licence_key or os.environ.get(LICENCE_KEY_ENV)
    if not licence_key:
        raise UsageError("no licence key", hint=f"pass --license-key or set {LICENCE_KEY_ENV}")
    if ca is None:
        raise UsageError("activate needs --ca (the server's CA certificate)", hint="and --cert/--key: the client certificate")
    _check_output(output, force)
    result = activate(url, licence_key, cert=cert, key=key, ca=ca, device=device, vendors=vendor_keys or None)
    with atomic_output(output, durable=True) as fd:
        os.write(fd, result.blob)
    lic = result.licence
    again = "re-activated" if result.reactivation else "activated"
    vendor = "" if result.vendor_checked else f"; vendor key {lic.vendor} not checked (pass --vendor)"
    _note(quiet, f"{again} {lic.model.name} {lic.model.version} for {lic.licensee!r}: seat {result.seat} of "
                 f"{result.seats}, expires {lic.expires.isoformat()} -> {output}{vendor}")  # fmt: skip


db_option = click.option("--db", help="Licence database URL: sqlite:///PATH (default: $TENSORSEAL_DB, else ./tensorseal-licences.sqlite3) or postgresql://...")


@license_group.command("add")
@db_option
@click.option("--seats", type=int, required=True, help="Devices that may hold the licence at once.")
@click.option("--model", required=True, help="Model name (as sealed, and as the server's --master key).")
@click.option("--model-version", "--version", "model_version", required=True, help="Model version.")
@click.option("--licensee", required=True, help="Who the licence is for (not secret).")
@click.option("--expires", required=True, help="Expiry in UTC: YYYY-MM-DD (midnight) or an ISO 8601 time.")
@quiet_option
def license_add(db: str | None, seats: int, model: str, model_version: str, licensee: str, expires: str, quiet: bool) -> None:
    """Create a licence in the activation server's database; prints its licence key
    (stdout; give it to the customer, it is not stored) and its id (stderr)."""
    from datetime import datetime

    from .server.licences import LicenceStore

    try:
        expiry = datetime.fromisoformat(expires)
    except ValueError:
        raise UsageError(f"--expires {expires!r} is not a date", hint="use YYYY-MM-DD or YYYY-MM-DDTHH:MM:SSZ") from None
    with LicenceStore(db) as store:
        licence_key, record = store.add(model=model, version=model_version, licensee=licensee, seats=seats, expires=expiry)
    click.echo(str(licence_key))
    _note(quiet, f"licence {record.licence_id}: {model} {model_version}, {seats} seat(s), for {licensee!r}, expires {record.expires.isoformat()}")


@license_group.command("revoke")
@click.argument("licence")
@db_option
@click.option("--reason", help="Why (kept in the database).")
@quiet_option
def license_revoke(licence: str, db: str | None, reason: str | None, quiet: bool) -> None:
    """Revoke LICENCE (its id, or its licence key): the server refuses new activations and
    renewals from now on. Licence files already issued open until they expire
    (serve --licence-days)."""
    from .server.licences import LicenceStore

    with LicenceStore(db) as store:
        record = store.revoke(licence, reason=reason)
    assert record.revoked is not None
    _note(quiet, f"licence {record.licence_id} ({record.model_name} {record.model_version}, {record.licensee!r}) "
                 f"revoked at {record.revoked.isoformat()}; {record.seats_used} device(s) held seats")  # fmt: skip


@license_group.command("list")
@db_option
@click.option("--json", "as_json", is_flag=True, help="Print JSON (with each licence's seats).")
def license_list(db: str | None, as_json: bool) -> None:
    """List the licences in the activation server's database, with the seats in use."""
    from .server.licences import LicenceStore

    with LicenceStore(db) as store:
        records = store.list()
        seats = {r.licence_id: store.activations(r.licence_id) for r in records} if as_json else {}
    if as_json:
        click.echo(json.dumps([{**r.to_json(), "activations": seats[r.licence_id]} for r in records], indent=2))
        return
    for r in records:
        state = f"revoked {r.revoked.date().isoformat()}" if r.revoked else f"expires {r.expires.date().isoformat()}"
        click.echo(f"{r.licence_id}  {r.model_name} {r.model_version}  {r.seats_used}/{r.seats} seats  {state}  {r.licensee}")


# ---- the one place where errors become exit codes ---------------------------------------
def main(argv: Sequence[str] | None = None) -> int:
    try:
        cli.main(args=argv, prog_name="tensorseal", standalone_mode=False)
        return 0
    except TensorSealError as e:
        click.echo(f"tensorseal: error: {e}", err=True)
        if e.hint:
            click.echo(f"tensorseal: hint: {e.hint}", err=True)
        return next(code for cls, code in EXIT_CODES if isinstance(e, cls))
    except click.exceptions.Exit as e:
        return e.exit_code
    except click.ClickException as e:
        click.echo(f"tensorseal: error: {e.format_message()}", err=True)
        click.echo("tensorseal: hint: run `tensorseal --help`", err=True)
        return 2
    except (click.exceptions.Abort, KeyboardInterrupt):
        click.echo("tensorseal: interrupted", err=True)
        return 130
    except OSError as e:
        click.echo(f"tensorseal: error: {e.strerror or e}{f': {e.filename}' if e.filename else ''}", err=True)
        return 1


if __name__ == "__main__":
    sys.exit(main())
