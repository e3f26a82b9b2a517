"""The operator image holds only the base dependencies and the `operator` extra
(scripts/build-images.sh: `operator=operator`), so the operator's modules must import with
nothing else installed. Checked in a subprocess whose importer refuses every top-level
module of an installed distribution outside that closure, as the image would lack it."""

from __future__ import annotations

import subprocess
import sys
import textwrap

PROBE = textwrap.dedent(
    """
    import importlib, importlib.metadata as md, re, sys

    def requirements(dist, extras=()):
        found = []
        for text in md.requires(dist) or []:
            name, _, marker = text.partition(";")
            wanted = re.findall(r'extra\\s*==\\s*"([^"]+)"', marker)
            if wanted and not set(wanted) & set(extras):
                continue
            if not wanted and marker.strip() and "python_version" not in marker \\
                    and "sys_platform" not in marker and "platform" not in marker:
                continue
            found.append(re.split(r"[\\s\\[<>=!~;(]", name.strip(), maxsplit=1)[0])
        return found

    def norm(name):
        return re.sub(r"[-_.]+", "-", name).lower()

    allowed, todo = set(), [("lykeion", ("operator",))]
    while todo:
        dist, extras = todo.pop()
        if norm(dist) in allowed:
            continue
        allowed.add(norm(dist))
        try:
            todo += [(r, ()) for r in requirements(dist, extras)]
        except md.PackageNotFoundError:
            pass
    blocked = {
        module
        for module, dists in md.packages_distributions().items()
        if not any(norm(d) in allowed for d in dists)
    } - set(sys.stdlib_module_names) - {"lykeion", "lykectl", "tests"}

    class Absent:
        # Finds what the other finders find, except blocked modules: those are not
        # installed (an import raises ModuleNotFoundError, find_spec gives None).

        def __init__(self, finders):
            self.finders = finders

        def find_spec(self, name, path=None, target=None):
            if name.partition(".")[0] in blocked:
                return None
            for finder in self.finders:
                spec = finder.find_spec(name, path, target)
                if spec is not None:
                    return spec
            return None

    sys.meta_path[:] = [Absent(list(sys.meta_path))]
    for module in sys.argv[1:]:
        importlib.import_module(module)
    print("ok", len(blocked))
    """
)


def test_the_operator_imports_with_the_operator_extra_alone() -> None:
    modules = ["lykeion.operator_main", "lykeion.handlers", "lykeion.executors.kubernetes"]
    done = subprocess.run(
        [sys.executable, "-c", PROBE, *modules], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr[-2000:]
    # The probe refuses something (serving's and training's libraries are installed here).
    assert int(done.stdout.split()[1]) > 10
