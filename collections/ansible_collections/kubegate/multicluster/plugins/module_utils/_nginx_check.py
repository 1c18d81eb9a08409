# -*- coding: utf-8 -*-
# Copyright: kubegate contributors
# Apache License 2.0 (see LICENSE)
"""Check rendered nginx map text with a real ``nginx -t`` (standard library only).

check_with_nginx() writes a minimal main configuration into a fresh temporary directory: the map text is included in
``http {}`` and a server (listening on a unix socket in that directory, never a TCP port) reads every variable the
maps define. Temp paths, pid file and logs all point into the directory and the error log goes to stderr, so the
check works as root and as an unprivileged user and never touches /var/log/nginx or /run.

Result: ``(ok, message)``. ``ok`` is True (accepted), False (rejected: message holds nginx's errors with the
temporary paths replaced by ``<maps>`` / ``<tmp>``) or None when no nginx binary was found (message starts with
NGINX_NOT_FOUND) so callers can skip the check with a notice.
"""
from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os
import re
import shutil
import subprocess
import tempfile

from ._nginx_map import quote

NGINX_NOT_FOUND = "nginx not found"
CANDIDATES = ("/usr/sbin/nginx", "/usr/local/sbin/nginx", "/usr/local/nginx/sbin/nginx",
              "/usr/local/openresty/nginx/sbin/nginx", "/usr/bin/nginx")
MAPS_FILE = "maps.conf"
CONF_FILE = "nginx.conf"
# `-e` (startup error log) exists since nginx 1.19.5; older versions log to their compiled-in path until the
# configuration's error_log takes over.
_ERROR_LOG_OPTION_SINCE = (1, 19, 5)
_MAP_LINE_RE = re.compile(r'^\s*map\s+(?:"(?:[^"\\]|\\.)*"|\S+)\s+\$([A-Za-z_][A-Za-z0-9_]*)\s*\{', re.M)
_LOG_PREFIX_RE = re.compile(r"^\d{4}/\d\d/\d\d \d\d:\d\d:\d\d \[(\w+)\] \d+#\d+: (?:\*\d+ )?", re.M)
_VERSION_RE = re.compile(r"nginx/(\d+)\.(\d+)\.(\d+)")
_VERSIONS = {}


def find_nginx(nginx_binary=None):
    """Path of the nginx binary to use: ``nginx_binary`` (a path or a name on PATH), else PATH, else usual places."""
    if nginx_binary:
        if os.sep in nginx_binary:
            return nginx_binary if _is_executable(nginx_binary) else None
        return shutil.which(nginx_binary)
    found = shutil.which("nginx")
    if found:
        return found
    for candidate in CANDIDATES:
        if _is_executable(candidate):
            return candidate
    return None


def nginx_version(binary, timeout=10):
    """(major, minor, patch) of ``binary`` from ``nginx -v``, or None when it cannot be told (cached per path)."""
    if binary in _VERSIONS:
        return _VERSIONS[binary]
    try:
        # no AnsibleModule (and so no run_command) here: the nginx_map filter runs this on the controller too
        proc = subprocess.run([binary, "-v"], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,  # pylint: disable=ansible-bad-function
                              stderr=subprocess.PIPE, timeout=timeout, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    match = _VERSION_RE.search((proc.stderr + proc.stdout).decode("utf-8", "replace"))
    version = tuple(int(part) for part in match.groups()) if match else None
    _VERSIONS[binary] = version
    return version


def defined_variables(text):
    """Names (without ``$``) of the variables the ``map`` blocks in ``text`` define, in order."""
    return _MAP_LINE_RE.findall(text)


def write_test_config(workdir, text, listen=None, map_hash_bucket_size=None, main_directives=()):
    """Write ``text`` and a main configuration that includes it into ``workdir``; return the configuration path.

    The server answers ``GET /kubegate/<name>`` with the value of ``$<name>`` for every variable the maps define.
    ``listen`` defaults to a unix socket in ``workdir``; ``main_directives`` are extra main-context lines (for a live
    server: ``daemon off;``, ``master_process off;``).
    """
    maps_path = os.path.join(workdir, MAPS_FILE)
    with open(maps_path, "w", encoding="utf-8", newline="\n") as handle:
        handle.write(text)

    def path(name):
        return quote(os.path.join(workdir, name))

    lines = [
        "# kubegate.multicluster: map check",
        "pid %s;" % path("nginx.pid"),
        "error_log stderr;",
    ]
    lines.extend(main_directives)
    lines.extend([
        "events {",
        "    worker_connections 64;",
        "}",
        "http {",
        "    access_log off;",
        "    client_body_temp_path %s;" % path("client_body"),
        "    proxy_temp_path %s;" % path("proxy"),
        "    fastcgi_temp_path %s;" % path("fastcgi"),
        "    uwsgi_temp_path %s;" % path("uwsgi"),
        "    scgi_temp_path %s;" % path("scgi"),
    ])
    if map_hash_bucket_size is not None:
        lines.append("    map_hash_bucket_size %d;" % int(map_hash_bucket_size))
    lines.extend([
        "    include %s;" % quote(maps_path),
        "    server {",
        "        listen %s;" % (listen or quote("unix:" + os.path.join(workdir, "check.sock"))),
    ])
    for name in defined_variables(text):
        lines.append("        location = /kubegate/%s { return 200 $%s; }" % (name, name))
    lines.extend([
        "        location / { return 404; }",
        "    }",
        "}",
    ])
    conf_path = os.path.join(workdir, CONF_FILE)
    with open(conf_path, "w", encoding="utf-8", newline="\n") as handle:
        handle.write("\n".join(lines) + "\n")
    return conf_path


def nginx_command(binary, workdir, conf_path, test=True, version=None):
    """The command line that runs ``binary`` with the configuration written by write_test_config()."""
    command = [binary]
    if test:
        command += ["-t", "-q"]
    command += ["-p", workdir.rstrip(os.sep) + os.sep, "-c", conf_path]
    version = version if version is not None else nginx_version(binary)
    if version is None or version >= _ERROR_LOG_OPTION_SINCE:
        command += ["-e", "stderr"]
    return command


def check_with_nginx(text, nginx_binary=None, map_hash_bucket_size=None, timeout=30):
    """Run ``nginx -t`` on ``text`` (rendered maps). Returns (ok, message); ok is None when nginx is missing."""
    binary = find_nginx(nginx_binary)
    if binary is None:
        where = nginx_binary or "PATH, " + ", ".join(CANDIDATES)
        return None, "%s (looked in %s); install nginx or pass nginx_binary" % (NGINX_NOT_FOUND, where)
    workdir = tempfile.mkdtemp(prefix="kubegate-nginx-")
    try:
        conf_path = write_test_config(workdir, text, map_hash_bucket_size=map_hash_bucket_size)
        command = nginx_command(binary, workdir, conf_path)
        try:
            proc = subprocess.run(command, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,  # pylint: disable=ansible-bad-function
                                  stderr=subprocess.PIPE, timeout=timeout, check=False)
        except subprocess.TimeoutExpired:
            return False, "nginx -t did not finish within %s seconds" % timeout
        except OSError as exc:
            return False, "could not run %s: %s" % (binary, exc)
        output = (proc.stderr + proc.stdout).decode("utf-8", "replace")
        message = clean_output(output, workdir)
        if proc.returncode == 0:
            return True, message or "nginx -t: the configuration test is successful"
        return False, message or "nginx -t failed with exit code %d" % proc.returncode
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def clean_output(output, workdir):
    """nginx's messages without timestamps/pids and with the temporary paths replaced by <maps> and <tmp>."""
    text = output.replace(os.path.join(workdir, MAPS_FILE), "<maps>")
    text = text.replace(workdir.rstrip(os.sep), "<tmp>")
    text = _LOG_PREFIX_RE.sub(lambda m: "[%s] " % m.group(1), text)
    lines = [line.rstrip() for line in text.splitlines() if line.strip()]
    errors = [line for line in lines if not line.startswith("nginx: configuration file")]
    return "\n".join(errors or lines)


def _is_executable(path):
    return os.path.isfile(path) and os.access(path, os.X_OK)
