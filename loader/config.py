"""The one place that reads the environment: settings for the dev, staging and prod environments."""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from urllib.parse import parse_qsl, quote, unquote, urlencode, urlsplit, urlunsplit

ENVIRONMENTS = ("dev", "staging", "prod")
DEFAULT_PORT = 55432
DEFAULT_HOST = "127.0.0.1"
SOURCE_DB = "source"
WAREHOUSE_DB = "warehouse"
PROJECT_ROOT = Path(__file__).resolve().parent.parent
# libpq connection parameters a URL's query string may carry (RDS: sslmode, sslrootcert), and
# the environment variable libpq reads for each: programs we do not hand a DSN (psql, dbt for
# the ones its profile has no field for) get them that way
LIBPQ_ENV = {
    "sslmode": "PGSSLMODE",
    "sslrootcert": "PGSSLROOTCERT",
    "sslcert": "PGSSLCERT",
    "sslkey": "PGSSLKEY",
    "sslcrl": "PGSSLCRL",
    "options": "PGOPTIONS",
    "target_session_attrs": "PGTARGETSESSIONATTRS",
    "gssencmode": "PGGSSENCMODE",
    "channel_binding": "PGCHANNELBINDING",
    "connect_timeout": "PGCONNECT_TIMEOUT",
    "keepalives_idle": "PGKEEPALIVESIDLE",
}


class UserError(Exception):
    """A failure the user can act on: `elt` prints its message, without a traceback."""


class ConfigError(UserError, ValueError):
    """A setting is missing or invalid; the message says which and how to fix it."""


def redact(url: str) -> str:
    """Return `url` with any password replaced by ***, safe to print or log."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.rsplit("@", 1)
    userinfo = netloc[0].split(":", 1)[0]
    return urlunsplit(parts._replace(netloc=f"{userinfo}:***@{netloc[1]}"))


@dataclass(frozen=True)
class Endpoint:
    """Where one database lives. The password is kept apart and never part of `display`."""

    host: str
    port: int
    user: str
    database: str
    password: str = field(default="", repr=False)
    socket_dir: str | None = None
    # the URL's query string (sslmode, sslrootcert, options...), in order, passed on unchanged
    params: tuple[tuple[str, str], ...] = ()
    # where the credentials come from at connection time (loader/credentials.py): an AWS
    # Secrets Manager secret in the RDS format, or an RDS IAM authentication token
    secret_id: str = ""
    iam_auth: bool = False

    @classmethod
    def from_url(cls, url: str, password: str | None = None) -> Endpoint:
        parts = urlsplit(url)
        if parts.scheme not in ("postgres", "postgresql", "postgresql+psycopg2"):
            raise ConfigError(
                f"unsupported URL scheme {parts.scheme!r} in {redact(url)}: "
                "use postgresql://user@host:port/database"
            )
        database = parts.path.lstrip("/")
        if not database:
            raise ConfigError(f"no database name in {redact(url)}: add /<database> to the URL")
        return cls(
            host=parts.hostname or DEFAULT_HOST,
            port=parts.port or 5432,
            user=unquote(parts.username or "postgres"),
            database=database,
            password=password if password is not None else unquote(parts.password or ""),
            params=tuple(parse_qsl(parts.query, keep_blank_values=True)),
        )

    @property
    def query(self) -> str:
        """`?sslmode=require&...` as the URL gave it, or an empty string."""
        return "?" + urlencode(self.params, quote_via=quote) if self.params else ""

    @property
    def display(self) -> str:
        """A connection URL without the password: what `elt warehouse url` prints."""
        if not self.host and self.secret_id:
            return f"postgresql://(from secret {self.secret_id})"
        return (
            f"postgresql://{quote(self.user)}@{self.host}:{self.port}/{self.database}{self.query}"
        )

    @property
    def sqlalchemy_url(self) -> str:
        auth = quote(self.user, safe="")
        if self.password:
            auth += ":" + quote(self.password, safe="")
        return (
            f"postgresql+psycopg2://{auth}@{self.host}:{self.port}/{self.database}{self.query}"
        )

    @property
    def dsn(self) -> str:
        """A libpq DSN for psycopg2 / dlt credentials (password included: never print it)."""
        auth = quote(self.user, safe="")
        auth += ":" + quote(self.password, safe="")
        return f"postgresql://{auth}@{self.host}:{self.port}/{self.database}{self.query}"

    def param(self, name: str) -> str | None:
        """The last value the URL gave for a libpq parameter, or None."""
        values = [v for k, v in self.params if k == name]
        return values[-1] if values else None

    def with_param(self, name: str, value: str) -> Endpoint:
        """This endpoint with one libpq parameter set (replacing what the URL gave)."""
        kept = tuple((k, v) for k, v in self.params if k != name)
        return replace(self, params=(*kept, (name, value)))

    def libpq_env(self) -> dict[str, str]:
        """The query parameters as the environment variables libpq reads (PGSSLMODE...)."""
        return {LIBPQ_ENV[k]: v for k, v in self.params if k in LIBPQ_ENV}

    def with_database(self, database: str) -> Endpoint:
        return replace(self, database=database)


@dataclass(frozen=True)
class QualitySettings:
    """The quality layer: results retention, report location, alert channels."""

    retention_days: int = 90
    reports_dir: Path = PROJECT_ROOT / "reports"
    report_url: str = ""  # link put in alerts; default: file:// URL of the HTML report
    html_report: bool = True  # `elt run` renders elementary.html (edr report, about 20 s)
    alert_level: str = "fail"  # fail: failures, errors and anomalies; warn: every warning too
    suppress_minutes: int = 60
    slack_webhook_url: str = field(default="", repr=False)
    webhook_url: str = field(default="", repr=False)
    smtp_host: str = ""
    smtp_port: int = 25
    smtp_user: str = ""
    smtp_password: str = field(default="", repr=False)
    smtp_starttls: bool = False
    email_from: str = ""
    email_to: tuple[str, ...] = ()


@dataclass(frozen=True)
class AwsSettings:
    """The optional AWS features (loader/aws/); boto3 finds its endpoint, region and
    credentials itself (AWS_ENDPOINT_URL, AWS_REGION, AWS_PROFILE or a role)."""

    s3_url: str = ""  # ELT_S3_URL: s3://bucket/prefix, the landing zone of every load
    log_group: str = ""  # ELT_CLOUDWATCH_LOG_GROUP: the run's JSON log lines go there
    metrics_namespace: str = "marketplace-elt"  # ELT_CLOUDWATCH_NAMESPACE

    @property
    def enabled(self) -> bool:
        return bool(self.s3_url or self.log_group)


@dataclass(frozen=True)
class Settings:
    """Everything the pipeline needs to know about where it runs."""

    env: str
    home: Path
    port: int
    source: Endpoint
    warehouse: Endpoint
    external_source: bool
    external_warehouse: bool
    tables_config: Path
    dbt_threads: int
    quality: QualitySettings = field(default_factory=QualitySettings)
    # `elt run` compares every table with the source by checksums (elt reconcile --deep)
    # every this many runs; 0: never
    deep_reconcile_every: int = 7
    # a local mirror of the dbt hub (<namespace>/<package>/<version>/) for machines that
    # cannot reach it (ELT_DBT_PACKAGES_MIRROR); None: `dbt deps` from the hub
    dbt_packages_mirror: Path | None = None
    aws: AwsSettings = field(default_factory=AwsSettings)

    @property
    def embedded(self) -> bool:
        """True when at least one database lives on the embedded server."""
        return not (self.external_source and self.external_warehouse)

    @property
    def pgdata(self) -> Path:
        return self.home / "pgdata"

    @property
    def logs_dir(self) -> Path:
        return self.home / "logs"

    @property
    def dlt_dir(self) -> Path:
        return self.home / "dlt"


def _int_env(environ: dict[str, str], name: str, default: int, lo: int, hi: int) -> int:
    raw = environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"{name}={raw!r} is not a whole number") from None
    if not lo <= value <= hi:
        raise ConfigError(f"{name}={value} is out of range: use a number from {lo} to {hi}")
    return value


def load_settings(environ: dict[str, str] | None = None) -> Settings:
    """Read the settings for the environment named by ELT_ENV (dev by default).

    dev uses the embedded server unless ELT_WAREHOUSE_URL / ELT_SOURCE_URL point elsewhere;
    staging and prod must name both servers, so that nothing is started by accident there.
    Passwords come from the URL or from ELT_WAREHOUSE_PASSWORD / ELT_SOURCE_PASSWORD.
    """
    env = dict(os.environ if environ is None else environ)
    name = env.get("ELT_ENV", "dev").strip().lower() or "dev"
    if name not in ENVIRONMENTS:
        raise ConfigError(f"ELT_ENV={name!r} is unknown: use one of {', '.join(ENVIRONMENTS)}")
    home = Path(env.get("ELT_HOME") or PROJECT_ROOT / ".elt").expanduser().resolve()
    port = _int_env(env, "ELT_PG_PORT", DEFAULT_PORT, 1024, 65535)

    wh_url = env.get("ELT_WAREHOUSE_URL", "").strip() or env.get("ELT_WAREHOUSE_SECRET_ID", "")
    src_url = env.get("ELT_SOURCE_URL", "").strip() or env.get("ELT_SOURCE_SECRET_ID", "")
    if name != "dev" and not (wh_url and src_url):
        missing = [
            n for n, v in (("ELT_WAREHOUSE_URL", wh_url), ("ELT_SOURCE_URL", src_url)) if not v
        ]
        raise ConfigError(
            f"ELT_ENV={name} needs external servers: set {' and '.join(missing)} "
            "(or the _SECRET_ID of each; the embedded server is for dev only)"
        )
    embedded = Endpoint(DEFAULT_HOST, port, "postgres", WAREHOUSE_DB)
    warehouse = _endpoint(env, "WAREHOUSE", embedded)
    source = _endpoint(env, "SOURCE", embedded.with_database(SOURCE_DB))
    tables = Path(
        env.get("ELT_TABLES_CONFIG") or PROJECT_ROOT / "loader" / "extract" / "tables.yml"
    )
    return Settings(
        env=name,
        home=home,
        port=port,
        source=source,
        warehouse=warehouse,
        external_source=bool(src_url),
        external_warehouse=bool(wh_url),
        tables_config=tables,
        dbt_threads=_int_env(env, "ELT_DBT_THREADS", 4, 1, 64),
        deep_reconcile_every=_int_env(env, "ELT_DEEP_RECONCILE_EVERY", 7, 0, 10_000),
        quality=_quality_settings(env),
        dbt_packages_mirror=_mirror(env),
        aws=AwsSettings(
            s3_url=env.get("ELT_S3_URL", "").strip().rstrip("/"),
            log_group=env.get("ELT_CLOUDWATCH_LOG_GROUP", "").strip(),
            metrics_namespace=env.get("ELT_CLOUDWATCH_NAMESPACE", "").strip()
            or AwsSettings.metrics_namespace,
        ),
    )


def _mirror(env: dict[str, str]) -> Path | None:
    raw = env.get("ELT_DBT_PACKAGES_MIRROR", "").strip()
    if not raw:
        return None
    path = Path(raw).expanduser().resolve()
    if not path.is_dir():
        raise ConfigError(
            f"ELT_DBT_PACKAGES_MIRROR={raw!r} is not a folder: point it at a mirror of the dbt "
            "hub (<namespace>/<package>/<version>/), or unset it to install from the hub"
        )
    return path


TRUE_WORDS = ("1", "true", "yes", "on")
FALSE_WORDS = ("0", "false", "no", "off")


def _endpoint(env: dict[str, str], role: str, default: Endpoint) -> Endpoint:
    """ELT_<role>_URL (its query string kept), _PASSWORD, _SSLMODE, _SECRET_ID, _IAM_AUTH.

    With a secret and no URL, the whole location comes from the secret, read at connection
    time (loader/credentials.py); with both, the URL says where and the secret who."""
    url = env.get(f"ELT_{role}_URL", "").strip()
    secret_id = env.get(f"ELT_{role}_SECRET_ID", "").strip()
    if url:
        endpoint = Endpoint.from_url(url, env.get(f"ELT_{role}_PASSWORD"))
    elif secret_id:
        endpoint = Endpoint("", 5432, "", "")
    else:
        endpoint = default
    sslmode = env.get(f"ELT_{role}_SSLMODE", "").strip()
    if sslmode:
        endpoint = endpoint.with_param("sslmode", sslmode)
    iam = env.get(f"ELT_{role}_IAM_AUTH", "").strip().lower() in TRUE_WORDS
    return replace(endpoint, secret_id=secret_id, iam_auth=iam)


def _quality_settings(env: dict[str, str]) -> QualitySettings:
    """ELT_QUALITY_* (results store, report) and ELT_ALERT_* (channels, de-duplication)."""
    level = env.get("ELT_ALERT_LEVEL", "fail").strip().lower() or "fail"
    if level not in ("fail", "warn"):
        raise ConfigError(f"ELT_ALERT_LEVEL={level!r} is unknown: use fail or warn")
    starttls = env.get("ELT_ALERT_SMTP_STARTTLS", "").strip().lower()
    if starttls not in ("", "0", "1", "true", "false", "yes", "no"):
        raise ConfigError(f"ELT_ALERT_SMTP_STARTTLS={starttls!r}: use true or false")
    defaults = QualitySettings()
    html = env.get("ELT_HTML_REPORT", "true").strip().lower() or "true"
    if html not in TRUE_WORDS + FALSE_WORDS:
        raise ConfigError(f"ELT_HTML_REPORT={html!r}: use true or false")
    return QualitySettings(
        retention_days=_int_env(env, "ELT_QUALITY_RETENTION_DAYS", 90, 1, 36500),
        reports_dir=Path(env.get("ELT_REPORTS_DIR") or defaults.reports_dir).expanduser(),
        report_url=env.get("ELT_REPORT_URL", "").strip(),
        html_report=html in TRUE_WORDS,
        alert_level=level,
        suppress_minutes=_int_env(env, "ELT_ALERT_SUPPRESS_MINUTES", 60, 0, 525600),
        slack_webhook_url=env.get("ELT_ALERT_SLACK_WEBHOOK_URL", "").strip(),
        webhook_url=env.get("ELT_ALERT_WEBHOOK_URL", "").strip(),
        smtp_host=env.get("ELT_ALERT_SMTP_HOST", "").strip(),
        smtp_port=_int_env(env, "ELT_ALERT_SMTP_PORT", 25, 1, 65535),
        smtp_user=env.get("ELT_ALERT_SMTP_USER", "").strip(),
        smtp_password=env.get("ELT_ALERT_SMTP_PASSWORD", ""),
        smtp_starttls=starttls in ("1", "true", "yes"),
        email_from=env.get("ELT_ALERT_EMAIL_FROM", "").strip() or "elt@localhost",
        email_to=tuple(
            a.strip() for a in env.get("ELT_ALERT_EMAIL_TO", "").split(",") if a.strip()
        ),
    )


# The dbt project's schemas (dbt_project.yml) and the environments that build them under these
# names; any other environment prefixes them with its name (macros/generate_schema_name.sql).
DBT_SCHEMAS = (
    "staging", "intermediate", "quarantine", "marts", "snapshots", "reference", "test_failures",
    "marts_build", "marts_live",  # the two copies behind the views of marts (macros/publish.sql)
    "elementary",
)
# made by the publish macros, not by a dbt node: what a manifest's nodes name is the rest
PUBLISHED_SCHEMAS = ("marts", "marts_live")
UNPREFIXED_ENVIRONMENTS = ("prod",)


def dbt_schema(env: str, schema: str) -> str:
    """Where environment `env` builds the dbt schema named `schema` in dbt_project.yml."""
    return schema if env in UNPREFIXED_ENVIRONMENTS else f"{env}_{schema}"


def dbt_relation(env: str, relation: str) -> str:
    """`schema.table` (or a bare schema) as environment `env` builds it: dbt's schemas are
    renamed, the others (raw_marketplace, ops, quality) are shared and kept."""
    schema, dot, table = relation.partition(".")
    return f"{dbt_schema(env, schema)}{dot}{table}" if schema in DBT_SCHEMAS else relation




def dbt_environment(settings: Settings, warehouse: Endpoint | None = None) -> dict[str, str]:
    """Variables that profiles/profiles.yml reads, derived from the resolved warehouse
    (`warehouse`: the endpoint with its live credentials, loader.credentials.live).

    The password goes in DBT_ENV_SECRET_ELT_WAREHOUSE_PASSWORD: dbt scrubs the values of
    DBT_ENV_SECRET_* variables from its logs and never writes them to its artifacts. The
    URL's query parameters reach dbt's psycopg2 as the variables libpq reads (PGSSLMODE,
    PGOPTIONS...), sslmode also as the profile's field, where `dbt debug` shows it."""
    wh = warehouse or settings.warehouse
    out = {
        "ELT_ENV": settings.env,
        "ELT_WAREHOUSE_HOST": wh.host,
        "ELT_WAREHOUSE_PORT": str(wh.port),
        "ELT_WAREHOUSE_USER": wh.user,
        "ELT_WAREHOUSE_DATABASE": wh.database,
        "ELT_DBT_THREADS": str(settings.dbt_threads),
        "DBT_PROFILES_DIR": str(PROJECT_ROOT / "profiles"),
        "DBT_SEND_ANONYMOUS_USAGE_STATS": "false",
        "DO_NOT_TRACK": "1",
    }
    out["ELT_WAREHOUSE_SSLMODE"] = wh.param("sslmode") or ""  # a field of the profile
    out.update(wh.libpq_env())
    if wh.password:
        out["DBT_ENV_SECRET_ELT_WAREHOUSE_PASSWORD"] = wh.password
    return out
