"""Validation of the ssh_jump option (no network)."""
from __future__ import annotations

import pytest

from ansible_collections.kubegate.multicluster.plugins.module_utils._cluster import jump
from ansible_collections.kubegate.multicluster.plugins.module_utils._cluster.errors import KubegateError


def test_normalise_gives_a_hashable_tuple(tmp_path):
    key, known = tmp_path / "id", tmp_path / "known_hosts"
    key.write_text("k")
    known.write_text("")
    value = jump.normalise({"host": "198.18.2.2", "user": "u", "key_file": str(key), "known_hosts": str(known)})
    assert value == ("198.18.2.2", 22, "u", str(key), str(known), 10.0)
    assert hash(value) and jump.describe(value) == "u@198.18.2.2:22"
    assert jump.normalise(None) is None


@pytest.mark.parametrize("value,message", [
    ("host", "must be a mapping"),
    ({"host": "h"}, "missing user, key_file, known_hosts"),
    ({"host": "h", "user": "u", "key_file": "/nonexistent/k", "known_hosts": "/etc/hostname"}, "does not exist"),
    ({"host": "h", "user": "u", "key_file": "/etc/hostname", "known_hosts": "/etc/hostname", "port": "x"},
     "port must be a number"),
    ({"host": "h", "user": "u", "key_file": "/etc/hostname", "known_hosts": "/etc/hostname", "agent": True},
     "unknown keys: agent"),
])
def test_normalise_refuses_bad_values(value, message):
    with pytest.raises(KubegateError) as err:
        jump.normalise(value)
    assert message in err.value.msg
