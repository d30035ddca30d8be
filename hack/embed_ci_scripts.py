#!/usr/bin/env python3
"""Generate ci/scripts.yml from ci/scripts/*.sh.

ci/pipeline.yml includes ci/scripts.yml with `include: local:`, which GitLab
resolves in the project that holds the component even when another project
includes it with `include: project:`. Every job writes the scripts from it into
a job-private folder and runs them there, so a project that adopts the pipeline
carries no copy of ci/scripts/, and the tested *.sh files stay the only source.

Usage: python3 hack/embed_ci_scripts.py [--check]
"""

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SCRIPTS_DIR = ROOT / "ci" / "scripts"
OUTPUT = ROOT / "ci" / "scripts.yml"
COMMAND = "python3 hack/embed_ci_scripts.py"
# The quoted heredoc delimiter: no script may have a line equal to it.
DELIMITER = "PIPELINE_SCRIPT_EOF"
# Where a job runs the scripts from: a folder of its own in the directory the job
# starts in (CI_PROJECT_DIR), written afresh, so jobs that share a directory
# (a shell runner, gitlab-ci-local) never see each other's copies.
FOLDER = "$PWD/.ci-scripts/job-${CI_JOB_ID:?}"
INDENT = " " * 6


def check_script(path: Path, text: str) -> None:
    """Refuse what would not survive the trip through YAML and the heredoc unchanged."""
    problems = []
    if not text.endswith("\n"):
        problems.append("does not end with a newline")
    if DELIMITER in text.splitlines():
        problems.append(f"has a line equal to the heredoc delimiter {DELIMITER}")
    if "$[[" in text:
        problems.append("contains '$[[', which GitLab would read as input interpolation")
    if "\r" in text:
        problems.append("has carriage returns")
    if any(line != line.rstrip() for line in text.splitlines()):
        problems.append("has trailing whitespace")
    if problems:
        sys.exit(f"embed_ci_scripts: {path.name} " + "; ".join(problems) + ": fix the script")


def render() -> str:
    """The text of ci/scripts.yml for the scripts as they are now."""
    lines = [
        f'PIPELINE_SCRIPTS="{FOLDER}"',
        'rm -rf "$PIPELINE_SCRIPTS"',
        'mkdir -p "$PIPELINE_SCRIPTS"',
    ]
    for path in sorted(SCRIPTS_DIR.glob("*.sh")):
        text = path.read_text(encoding="utf-8")
        check_script(path, text)
        lines.append(f"cat >\"$PIPELINE_SCRIPTS/{path.name}\" <<'{DELIMITER}'")
        lines.extend(text.splitlines())
        lines.append(DELIMITER)
    lines.append('chmod 0755 "$PIPELINE_SCRIPTS"/*.sh')
    block = "\n".join(INDENT + line if line else "" for line in lines)
    return f"""\
# GENERATED from ci/scripts/*.sh by hack/embed_ci_scripts.py; do not edit.
# After changing a script, run: {COMMAND}
#
# ci/pipeline.yml includes this file with `include: local:`, which GitLab reads
# from the project and commit that hold ci/pipeline.yml, also for a project that
# includes the component from here. Each job starts its script with
# `!reference [.pipeline_scripts, script]`, which writes the scripts into
# .ci-scripts/job-<job id>/ of the job's directory and sets PIPELINE_SCRIPTS to it.
# The long lines are the scripts' own (shellcheck checks them in ci/scripts/).
# yamllint disable rule:line-length
.pipeline_scripts:
  script:
    - |
{block}
"""


def main(argv: list[str]) -> int:
    """Write ci/scripts.yml, or with --check fail when it is not what render() gives."""
    wanted = render()
    if argv == ["--check"]:
        current = OUTPUT.read_text(encoding="utf-8") if OUTPUT.is_file() else ""
        if current != wanted:
            print(f"ci/scripts.yml is out of date with ci/scripts/: run {COMMAND}", file=sys.stderr)
            return 1
        return 0
    if argv:
        print(__doc__.strip().splitlines()[-1], file=sys.stderr)
        return 2
    OUTPUT.write_text(wanted, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
