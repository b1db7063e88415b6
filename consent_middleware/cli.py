"""Operator commands: ``consent-middleware geo update`` and ``consent-middleware log ...``."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import gzip
import itertools
import json
import os
import sys
import tempfile
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, Final, NoReturn
from urllib.parse import parse_qsl, quote, unquote, urlencode, urlsplit, urlunsplit

import geoip2.database
import maxminddb

if TYPE_CHECKING:
    from .log import ConsentLog

__all__ = ["main"]

#: DB-IP's free "IP to Country Lite" database (CC BY 4.0), published monthly.
DBIP_URL: Final = "https://download.db-ip.com/free/dbip-country-lite-{year:04d}-{month:02d}.mmdb.gz"
DEFAULT_OUTPUT: Final = "geoip-country.mmdb"
MAX_DOWNLOAD_BYTES: Final = 512 * 1024 * 1024
DOWNLOAD_TIMEOUT: Final = 120
GZIP_MAGIC: Final = b"\x1f\x8b"
#: Any public address: a database that cannot place it is not a country database.
PROBE_ADDRESS: Final = "8.8.8.8"


class UpdateError(Exception):
    pass


def dbip_urls(today: dt.date) -> list[str]:
    """This month's file, then last month's (the new one appears during the month)."""
    last_month = today.replace(day=1) - dt.timedelta(days=1)
    return [DBIP_URL.format(year=day.year, month=day.month) for day in (today, last_month)]


def download(url: str) -> bytes:
    if not url.startswith(("https://", "http://")):
        raise UpdateError(f"{url}: only http(s) URLs are fetched")
    try:
        with urllib.request.urlopen(url, timeout=DOWNLOAD_TIMEOUT) as response:  # noqa: S310 - scheme checked
            data: bytes = response.read(MAX_DOWNLOAD_BYTES + 1)
    except (urllib.error.URLError, OSError) as error:
        raise UpdateError(f"{url}: {error}") from None
    if len(data) > MAX_DOWNLOAD_BYTES:
        raise UpdateError(f"{url}: larger than {MAX_DOWNLOAD_BYTES} bytes")
    if data.startswith(GZIP_MAGIC):
        try:
            data = gzip.decompress(data)
        except (OSError, EOFError) as error:
            raise UpdateError(f"{url}: broken gzip data: {error}") from None
    return data


def check_database(path: Path) -> str:
    """Open the file as geoip2 will and look one address up; its type on success."""
    try:
        with geoip2.database.Reader(os.fspath(path)) as reader:
            database_type = reader.metadata().database_type
            if "Country" in database_type:
                reader.country(PROBE_ADDRESS)
            elif "City" in database_type:
                reader.city(PROBE_ADDRESS)
            else:
                raise UpdateError(f"database type {database_type!r} has no countries")
    except (OSError, ValueError, maxminddb.InvalidDatabaseError) as error:
        raise UpdateError(f"not a usable MMDB file: {error}") from None
    except Exception as error:  # geoip2 raises AddressNotFoundError and others for odd files
        raise UpdateError(f"the database cannot answer a lookup: {error}") from None
    return database_type


def update_geo(urls: Sequence[str], output: Path) -> str:
    """Download the first URL that works, check it, and swap it in atomically."""
    errors = []
    for url in urls:
        try:
            data = download(url)
        except UpdateError as error:
            errors.append(str(error))
            continue
        output.parent.mkdir(parents=True, exist_ok=True)
        handle, temporary = tempfile.mkstemp(dir=output.parent, prefix=f".{output.name}.", suffix=".tmp")
        try:
            with os.fdopen(handle, "wb") as file:
                file.write(data)
                file.flush()
                os.fsync(file.fileno())
            database_type = check_database(Path(temporary))
            os.chmod(temporary, 0o644)
            os.replace(temporary, output)  # a running middleware sees the whole old or the whole new file
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise
        return f"{output}: {database_type} from {url}"
    raise UpdateError("; ".join(errors))


# --- the consent log -----------------------------------------------------------------------------------

DEFAULT_LOG: Final = "sqlite:///consent-log.sqlite3"
LOG_ENV: Final = "CONSENT_LOG"
KEY_ENV: Final = "CONSENT_SECRET_KEY"
DEFAULT_REPORT: Final = "consent-report.html"
PROGRESS_EVERY: Final = 10_000
#: Only to run the option checks of ConsentConfig on a file's durations; never signs anything.
_PLACEHOLDER_KEY: Final = "placeholder-for-option-checks-only-0123456789"
MASK: Final = "***"
SECRET_QUERY_KEYS: Final = frozenset({"password", "passfile", "sslpassword", "sslkey"})


class UsageError(Exception):
    """Bad command-line arguments: one line on stderr, exit status 2."""


class CommandError(Exception):
    """A command that cannot be done (bad input, unreadable log): one line on stderr, exit status 1."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{self.prog}: {message} (see --help)")


def mask_url(url: str) -> str:
    """``url`` with its password (in the authority or the query) replaced by ``***``."""
    try:
        parts = urlsplit(url)
        password = parts.password
    except ValueError:
        return url.split("://", 1)[0] + "://" + MASK if "://" in url else MASK
    netloc = parts.netloc
    if password is not None:
        userinfo, _, host = netloc.rpartition("@")
        user = userinfo.split(":", 1)[0]
        netloc = f"{user}:{MASK}@{host}"
    query = parts.query
    if query:
        pairs = parse_qsl(query, keep_blank_values=True)
        if any(key.lower() in SECRET_QUERY_KEYS for key, _ in pairs):
            masked = [(key, MASK if key.lower() in SECRET_QUERY_KEYS else value) for key, value in pairs]
            query = urlencode(masked, safe="*")
    if (netloc, query) == (parts.netloc, parts.query):
        return url  # nothing to hide (urlunsplit would also turn sqlite:////abs into sqlite://abs)
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


def _secrets_of(url: str, keys: Sequence[str]) -> list[str]:
    """Every text that must never be printed: the keys and the URL's password in all its spellings."""
    found = [key for key in keys if key]
    with contextlib.suppress(ValueError):
        parts = urlsplit(url)
        if parts.password:
            found += [parts.password, unquote(parts.password), quote(unquote(parts.password), safe="")]
        found += [
            text
            for key, value in parse_qsl(parts.query, keep_blank_values=True)
            if key.lower() in SECRET_QUERY_KEYS and value
            for text in (value, quote(value, safe=""))
        ]
    return sorted(set(found), key=len, reverse=True)


def redact(text: str, url: str, keys: Sequence[str]) -> str:
    """``text`` (an error message, say) with the URL masked and no secret left in it."""
    text = text.replace(url, mask_url(url)) if url else text
    for secret in _secrets_of(url, keys):
        text = text.replace(secret, MASK)
    return text


def _days(text: str) -> int:
    try:
        days = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number of days") from None
    if days <= 0:
        raise argparse.ArgumentTypeError(f"{text!r}: the number of days must be positive")
    return days


def _since(text: str) -> dt.datetime:
    from .report import parse_since

    try:
        return parse_since(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def _log_options() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--log",
        metavar="URL",
        help=f"the log: sqlite:///PATH or postgresql://... (default: ${LOG_ENV}, the config file's "
        f"consent_log, or {DEFAULT_LOG})",
    )
    common.add_argument(
        "--secret-key",
        metavar="KEY",
        action="append",
        dest="secret_keys",
        help=f"a secret the log is signed with, newest first; repeat for several (default: ${KEY_ENV}, "
        "comma-separated, or the config file's secret_key). Prefer the environment: a command line is "
        "visible to other users of the machine",
    )
    common.add_argument(
        "--config",
        metavar="PATH",
        type=Path,
        help="the middleware's TOML options file: consent_log, secret_key, consent_max_age and "
        "log_retention are read from it",
    )
    return common


def _add_log_commands(commands: Any) -> None:
    common = _log_options()
    log = commands.add_parser(
        "log",
        help="the consent log (proof of consent): export, stats, purge, verify, report",
        description="Operator commands for the consent log. No secret or database password is printed.",
    ).add_subparsers(dest="action", required=True)

    export = log.add_parser("export", parents=[common], help="every entry, as CSV or JSON lines, streamed")
    export.add_argument(
        "--format", choices=("csv", "jsonl"), default="csv", help="default csv (with a header row)"
    )
    export.add_argument(
        "--output",
        metavar="FILE",
        type=Path,
        help="write here (created readable by you only); default stdout",
    )
    export.add_argument(
        "--since", metavar="DATE", type=_since, help="only entries at or after YYYY-MM-DD (UTC)"
    )
    export.add_argument(
        "--progress",
        action=argparse.BooleanOptionalAction,
        default=None,
        help=f"a counter on stderr every {PROGRESS_EVERY} entries (default: when stderr is a terminal)",
    )

    stats = log.add_parser(
        "stats",
        parents=[common],
        help="acceptance rate per category, day, country and language",
        description="Acceptance rate per category (the share of decisions that granted it), overall and per "
        "day, country and language, with counts. Each visitor (consent id) counts once, with their "
        "latest decision in the period; per day, with their latest decision that day. A withdrawal is a "
        "decision that grants nothing. Days are UTC.",
    )
    stats.add_argument("--by", choices=("category", "day", "country", "language"), help="one breakdown only")
    stats.add_argument(
        "--since", metavar="DATE", type=_since, help="only decisions at or after YYYY-MM-DD (UTC)"
    )
    stats.add_argument("--json", action="store_true", help="JSON instead of tables")

    purge = log.add_parser(
        "purge",
        parents=[common],
        help="delete old entries (never those younger than consent_max_age)",
        description="Delete the entries older than a number of days, or than the log's retention "
        "(log_retention: consent_max_age + 365 days unless the config file says otherwise). Entries "
        "younger than consent_max_age are the proof of consents still in force: a purge that would cut "
        "into them is refused.",
    )
    age = purge.add_mutually_exclusive_group(required=True)
    age.add_argument("--older-than", metavar="DAYS", type=_days, help="delete entries older than DAYS days")
    age.add_argument("--retention", action="store_true", help="delete entries older than log_retention")
    purge.add_argument(
        "--consent-max-age",
        metavar="DAYS",
        type=_days,
        help="the site's consent_max_age in days (default: the config file's, or 182)",
    )

    log.add_parser(
        "verify",
        parents=[common],
        help="check the HMAC chain: exit 0 when intact, 1 naming each edited or missing entry",
    )

    report = log.add_parser(
        "report",
        parents=[common],
        help="one self-contained HTML file with charts (needs consent-middleware[report])",
    )
    report.add_argument(
        "--output", metavar="FILE", type=Path, default=Path(DEFAULT_REPORT), help=f"default {DEFAULT_REPORT}"
    )
    report.add_argument(
        "--since", metavar="DATE", type=_since, help="only decisions at or after YYYY-MM-DD (UTC)"
    )


class _Settings:
    """Where the log is, its keys, and the durations, from the options, the environment, the config file."""

    def __init__(self, args: argparse.Namespace) -> None:
        from .config import ConsentConfig, load_toml

        self.keys: tuple[str, ...] = tuple(key for key in args.secret_keys or () if key)
        self.url: str = args.log or os.environ.get(LOG_ENV, "").strip()
        if not self.keys:
            self.keys = tuple(key.strip() for key in os.environ.get(KEY_ENV, "").split(",") if key.strip())
        options: dict[str, Any] = {}
        if args.config is not None:
            try:
                options = load_toml(args.config, _option_names())
            except ValueError as error:
                raise CommandError(str(error)) from None
        if not self.url:
            configured = options.get("consent_log")
            self.url = configured if isinstance(configured, str) and configured else DEFAULT_LOG
        if not self.keys:
            configured = options.get("secret_key")
            if isinstance(configured, str):
                self.keys = (configured,)
            elif isinstance(configured, list):
                self.keys = tuple(key for key in configured if isinstance(key, str) and key)
        try:
            checked = ConsentConfig(
                secret_key=(_PLACEHOLDER_KEY,),
                consent_log=None,
                **{name: options[name] for name in ("consent_max_age", "log_retention") if name in options},
            )
        except (ValueError, TypeError) as error:
            raise CommandError(f"config: {error}") from None
        self.consent_max_age: dt.timedelta = checked.consent_max_age
        assert checked.log_retention is not None
        self.log_retention: dt.timedelta = checked.log_retention
        if getattr(args, "consent_max_age", None) is not None:
            self.consent_max_age = dt.timedelta(days=args.consent_max_age)
            if args.config is None or "log_retention" not in options:
                self.log_retention = self.consent_max_age + dt.timedelta(days=365)

    @property
    def source(self) -> str:
        return mask_url(self.url)

    def redact(self, text: str) -> str:
        return redact(text, self.url, self.keys)


def _option_names() -> set[str]:
    from dataclasses import fields

    from .config import ConsentConfig

    return {item.name for item in fields(ConsentConfig) if item.init}


@contextlib.contextmanager
def _opened(settings: _Settings) -> Iterator[ConsentLog]:
    from .log import open_log

    if not settings.url.startswith(("sqlite:///", "postgresql://", "postgres://")):
        raise CommandError(
            f"{settings.source}: not a consent log URL; use sqlite:///PATH or postgresql://USER@HOST/DB"
        )
    if settings.url.startswith("sqlite:///"):
        path = Path(settings.url.removeprefix("sqlite:///").split("?", 1)[0])
        if not path.is_file():  # opening would create an empty log: an operator typo must not look fine
            raise CommandError(
                f"no consent log at {path} (from {settings.source}); check --log or ${LOG_ENV}"
            )
    if not settings.keys:
        raise CommandError(
            f"the consent log needs the secret key it is signed with: set ${KEY_ENV} (comma-separated, "
            "newest first) or pass --secret-key"
        )
    log = open_log(settings.url, secret_keys=settings.keys)
    if log is None:  # pragma: no cover - only for a URL of None
        raise CommandError("no consent log configured")
    try:
        yield log
    finally:
        with contextlib.suppress(Exception):
            asyncio.run(log.close())


@contextlib.contextmanager
def _output(path: Path | None, *, mode: int = 0o600) -> Iterator[IO[str]]:
    """stdout, or a file written beside ``path`` and renamed over it once complete.

    An export holds personal data (truncated IPs, browsers): by default only its owner may read it.
    """
    if path is None:
        yield sys.stdout
        sys.stdout.flush()
        return
    directory = path.parent if str(path.parent) else Path()
    try:
        handle, temporary = tempfile.mkstemp(dir=directory, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as error:
        raise CommandError(f"cannot write {path}: {error.strerror or error}") from None
    try:
        with os.fdopen(handle, "w", encoding="utf-8", newline="") as file:
            yield file
            file.flush()
            os.fsync(file.fileno())
        os.chmod(temporary, mode)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def _entries(count: int) -> str:
    return f"{count} {'entry' if count == 1 else 'entries'}"


class _Progress:
    def __init__(self, enabled: bool | None, *, what: str) -> None:
        self._tty = sys.stderr.isatty()
        self.enabled = self._tty if enabled is None else enabled
        self._what = what
        self._shown = False

    def __call__(self, count: int) -> None:
        if self.enabled:
            text = f"{_entries(count)} {self._what}"
            # On a terminal the counter rewrites its line; in a log file, one line per step.
            print(
                f"\r{text}" if self._tty else text, end="" if self._tty else "\n", file=sys.stderr, flush=True
            )
            self._shown = True

    def done(self) -> None:
        if self._shown and self._tty:
            print(file=sys.stderr)


def _export(args: argparse.Namespace, settings: _Settings) -> int:
    from .report import export_csv, export_jsonl

    writer = export_csv if args.format == "csv" else export_jsonl
    progress = _Progress(args.progress, what="exported")
    with _opened(settings) as log:
        entries = log.entries(since=args.since)
        # Read the first entry before writing a byte: an unreachable log leaves no header behind.
        first = list(itertools.islice(entries, 1))
        with _output(args.output) as out:
            count = writer(itertools.chain(first, entries), out, progress=progress, every=PROGRESS_EVERY)
    progress.done()
    where = f" to {args.output}" if args.output is not None else ""
    print(f"{_entries(count)} exported{where} from {settings.source}", file=sys.stderr)
    return 0


def _stats(args: argparse.Namespace, settings: _Settings) -> int:
    from .report import compute_stats, stats_json, stats_table

    with _opened(settings) as log:
        stats = compute_stats(log.entries(since=args.since), since=args.since)
    if args.json:
        document = {"log": settings.source, **stats_json(stats, args.by)}
        print(json.dumps(document, indent=2, ensure_ascii=False))
    else:
        print(f"Log: {settings.source}")
        print(stats_table(stats, args.by), end="")
    return 0


def _purge(args: argparse.Namespace, settings: _Settings) -> int:
    max_age = settings.consent_max_age
    age = settings.log_retention if args.retention else dt.timedelta(days=args.older_than)
    if age < max_age:
        raise CommandError(
            f"refusing to purge entries younger than consent_max_age ({max_age.days} days): they are the "
            f"proof of consents still in force; use --older-than {max_age.days} or more"
        )
    cutoff = dt.datetime.now(dt.UTC) - age
    with _opened(settings) as log:
        removed = log.purge(older_than=cutoff)
    print(
        f"{_entries(removed)} older than {age.days} days (before {cutoff:%Y-%m-%d %H:%M} UTC) "
        f"removed from {settings.source}"
    )
    return 0


def _verify(args: argparse.Namespace, settings: _Settings) -> int:
    with _opened(settings) as log:
        report = log.verify()
    if report.ok:
        print(f"{_entries(report.checked)} verified: the chain of {settings.source} is intact")
        return 0
    for problem in report.problems:
        print(settings.redact(str(problem)))
    print(
        f"verification FAILED: {len(report.problems)} problem(s) in {_entries(report.checked)} "
        f"of {settings.source}",
        file=sys.stderr,
    )
    return 1


def _report(args: argparse.Namespace, settings: _Settings) -> int:
    from .report import ReportUnavailable, compute_stats, render_report

    try:
        import matplotlib  # noqa: F401 - checked before the log is read
    except ImportError:
        raise CommandError(
            "the HTML report needs matplotlib: pip install consent-middleware[report]"
        ) from None
    with _opened(settings) as log:
        stats = compute_stats(log.entries(since=args.since), since=args.since)
    try:
        page = render_report(stats, source=settings.source)
    except ReportUnavailable as error:
        raise CommandError(str(error)) from None
    with _output(args.output, mode=0o644) as out:  # aggregates only: shareable
        out.write(page)
    read = _entries(stats.entries)
    print(f"{args.output}: {stats.overall.decisions} decisions from {read} of {settings.source}")
    return 0


LOG_COMMANDS: Final[dict[str, Callable[[argparse.Namespace, _Settings], int]]] = {
    "export": _export,
    "stats": _stats,
    "purge": _purge,
    "verify": _verify,
    "report": _report,
}


def _run_log(args: argparse.Namespace) -> int:
    settings: _Settings | None = None
    try:
        settings = _Settings(args)
        return LOG_COMMANDS[args.action](args, settings)
    except CommandError as error:
        message = settings.redact(str(error)) if settings else str(error)
        print(f"consent-middleware log {args.action}: {message}", file=sys.stderr)
    except BrokenPipeError:  # `log export | head`: the reader has what it wanted
        with contextlib.suppress(OSError):
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    except KeyboardInterrupt:
        print(f"consent-middleware log {args.action}: interrupted", file=sys.stderr)
        return 130
    except Exception as error:  # an unreadable log, a lost connection: one line, never a traceback
        text = str(error).strip().splitlines()[0] if str(error).strip() else ""
        message = f"{type(error).__name__}: {text}" if text else type(error).__name__
        if settings is not None:
            message = settings.redact(f"{message} (log {settings.source})")
        print(f"consent-middleware log {args.action}: {message}", file=sys.stderr)
    return 1


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="consent-middleware", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    geo = commands.add_parser("geo", help="the geolocation database").add_subparsers(
        dest="action", required=True
    )
    update = geo.add_parser(
        "update", help="download DB-IP's free country database (CC BY 4.0) or --url, check it, swap it in"
    )
    update.add_argument("--url", help="an MMDB (or .mmdb.gz) URL instead of DB-IP's monthly file")
    update.add_argument(
        "--output",
        type=Path,
        default=Path(DEFAULT_OUTPUT),
        help=f"where to write it (default {DEFAULT_OUTPUT})",
    )
    _add_log_commands(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
    except UsageError as error:
        print(error, file=sys.stderr)
        return 2
    if args.command == "log":
        return _run_log(args)
    if args.command == "geo" and args.action == "update":
        urls = [args.url] if args.url else dbip_urls(dt.datetime.now(dt.UTC).date())
        try:
            print(update_geo(urls, args.output))
        except UpdateError as error:
            print(f"consent-middleware: geo update failed, {args.output} unchanged: {error}", file=sys.stderr)
            return 1
        print(f"Set geoip_database={str(args.output)!r}; running apps pick the new file up within seconds.")
        if not args.url:
            print(
                "DB-IP's licence (CC BY 4.0) asks for the credit that the cookie page shows: "
                "IP Geolocation by DB-IP."
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
