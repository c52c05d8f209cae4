"""k3c's test suite: ``unit/`` runs in-process, ``e2e/`` starts real processes, ``support/`` holds the
harnesses and data both use. A package, so tests import harnesses as ``tests.support.harness`` with pytest's
ordinary rootdir handling and child processes run them as ``python -m tests.support.…``."""
