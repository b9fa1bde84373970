"""The AWS extra is optional: the core never imports boto3 unless a feature is configured."""

import subprocess
import sys

from loader.config import PROJECT_ROOT


def test_the_core_imports_no_aws_module():
    code = (
        "import sys, loader.cli, loader.db, loader.credentials, loader.warehouse, "
        "loader.extract.pipeline, loader.orchestrate.job, loader.orchestrate.dbt; "
        "print(sorted(m for m in sys.modules if m.split('.')[0] in "
        "('boto3', 'botocore', 'moto') or m.startswith('loader.aws')))"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=PROJECT_ROOT, capture_output=True,
                          text=True, check=True)
    assert done.stdout.strip() == "[]"
