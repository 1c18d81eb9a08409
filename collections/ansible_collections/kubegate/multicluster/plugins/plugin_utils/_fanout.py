# -*- coding: utf-8 -*-
# Copyright: kubegate contributors
# Apache License 2.0 (see LICENSE)
"""Controller-side fan-out: one task (`run_once: true`, `fanout: "{{ ansible_play_hosts }}"`) runs the same call for
every listed inventory host from the controller process, a thread pool wide.

Per listed host, the task's options are resolved as if the task ran on that host: the untemplated task arguments and the
matching `module_defaults` are layered the way ansible-core layers them (defaults < templated args splat < task args;
a value that templates to `omit` drops the option) and templated with that host's variables (inventory, group and host
vars, facts, play and task vars, as the variable manager gives them for a task on that host). Each host's arguments are
then validated with the module's argument spec and run by the module's runner -- the same code the single-host fast
path uses (`_fastpath.FastPathAction._validate` / `_call`), so there is no second connection layer. Hosts sharing a
cluster share its TLS context, keep-alive connections and ssh forward (process-wide caches in module_utils/_cluster).

The pure pieces (host list checks, layering, pool, aggregation) take plain callables so they are unit-tested without a
playbook; `run_fanout` binds them to an action plugin.
"""
from __future__ import annotations

import collections.abc
from concurrent.futures import ThreadPoolExecutor

from ansible.errors import AnsibleActionFail, AnsibleValueOmittedError
from ansible.module_utils.common.parameters import remove_values

from ansible_collections.kubegate.multicluster.plugins.module_utils._cluster.spec import DEFAULT_FANOUT_CONCURRENCY

FANOUT_OPTIONS = ("fanout", "fanout_concurrency")
LOCAL_CONNECTIONS = frozenset(("local", "ansible.builtin.local", "ansible.legacy.local"))
# Variables the task executor adds for a loop item; a looped fan-out task sees the same item on every host.
LOOP_VARIABLES = ("ansible_loop_var", "ansible_index_var", "ansible_loop")
DETAILED_FAILURES = 20
DETAIL_CHARS = 400


class FanoutInputError(Exception):
    """Bad fan-out input: the task fails before anything runs."""


class HostError(Exception):
    """This host cannot run the call (its options do not template or validate): only this host fails."""


# ---------------------------------------------------------------------------------------------------------------- input

def check_hosts(value, is_host):
    """The listed inventory hostnames, in order, without repeats. `is_host(name) -> bool`."""
    if isinstance(value, (str, bytes)) or not isinstance(value, collections.abc.Sequence):
        shown = repr(value) if isinstance(value, (str, bytes)) else type(value).__name__
        raise FanoutInputError(
            "fanout must be a list of inventory hostnames, for example fanout: \"{{ ansible_play_hosts }}\"; got %s. "
            "Host patterns and group names are not expanded (use \"{{ groups['NAME'] }}\" for a group)." % shown)
    hosts = []
    bad = []
    for item in value:
        if not isinstance(item, str) or not item:
            bad.append(repr(item))
        elif item not in hosts:
            hosts.append(item)
    if bad:
        raise FanoutInputError("fanout items must be inventory hostnames (non-empty strings); got %s"
                               % ", ".join(bad[:5]))
    unknown = [h for h in hosts if not is_host(h)]
    if unknown:
        raise FanoutInputError(
            "fanout lists %s not in the inventory: %s. fanout takes inventory hostnames (for example "
            "\"{{ ansible_play_hosts }}\"); group names and patterns are not expanded."
            % ("a host" if len(unknown) == 1 else "%d hosts" % len(unknown), ", ".join(unknown)))
    return hosts


def check_concurrency(value):
    if value is None:
        return DEFAULT_FANOUT_CONCURRENCY
    if isinstance(value, bool) or not isinstance(value, int):
        try:
            value = int(str(value).strip())
        except ValueError:
            raise FanoutInputError("fanout_concurrency must be a whole number of at least 1, got %r" % (value,))
    if value < 1:
        raise FanoutInputError("fanout_concurrency must be at least 1, got %d" % value)
    return value


def check_run_once(run_once, play_batch):
    """A fan-out task must run once: otherwise every play host would call every listed host."""
    if run_once or len(play_batch or ()) <= 1:
        return
    raise FanoutInputError(
        "fanout needs run_once: true on the task (this play runs on %d hosts, and each of them would repeat the call "
        "for every listed host)" % len(play_batch))


# ---------------------------------------------------------------------------------------------------------------- layering

def module_defaults_layer(module_defaults, action, groups_of_action):
    """The untemplated `module_defaults` entries for `action` (a FQCN), as ansible-core merges them: the task's list of
    mappings merged in order, then every `group/NAME` the action belongs to, then the action's own entry on top.
    Group values may still be templates of a mapping; they are resolved per host by `layer_args`."""
    merged = {}
    for entry in module_defaults or ():
        if isinstance(entry, collections.abc.Mapping):
            merged.update(entry)
    layers = []
    for key in merged:
        if isinstance(key, str) and key.startswith("group/") and key.split("group/")[-1] in (groups_of_action or ()):
            layers.append(merged[key])
    if action in merged:
        layers.append(merged[action])
    return layers


def layer_args(layers, template, omitted=AnsibleValueOmittedError, skip=()):
    """Task args from layers (lowest first; a layer is a mapping, or a template of one), each value templated with
    `template(value)`. The top-most layer defining an option wins; if its value templates to omit the option is left
    out (no fall back to a lower layer), as ansible-core does. Options in `skip` are left out untemplated."""
    resolved = []
    for layer in layers:
        if layer is None:
            continue
        if isinstance(layer, str):
            try:
                layer = template(layer)
            except omitted:
                layer = {}
        if not isinstance(layer, collections.abc.Mapping):
            raise HostError("task args must resolve to a mapping, not %s" % type(layer).__name__)
        resolved.append(layer)
    args = {}
    for key in sorted(set(k for layer in resolved for k in layer)):
        if key in skip:
            continue
        top = [layer for layer in resolved if key in layer][-1]
        try:
            args[key] = template(top[key])
        except omitted:
            continue
        except Exception as e:  # pylint: disable=broad-except
            raise HostError("option %s could not be templated: %s" % (key, _error_text(e)))
    return args


def _error_text(e):
    text = str(getattr(e, "message", None) or e)
    cause = e.__cause__
    while cause is not None:
        extra = str(getattr(cause, "message", None) or cause)
        if extra and extra not in text:
            text += ": " + extra
        cause = cause.__cause__
    return " ".join(text.split())


# ---------------------------------------------------------------------------------------------------------------- running

def run_calls(calls, call, concurrency):
    """{host: result} for calls, an iterable of (host, prepared) that may be lazy: each host's call starts as soon as it
    is produced (so preparing the next hosts overlaps the calls in flight), `concurrency` at a time, via
    `call(prepared) -> result`. A host whose `prepared` is a HostError fails without running; an exception escaping
    `call` fails only its host. Results come back in the order the hosts were produced."""
    def guarded(prepared):
        try:
            return call(prepared)
        except Exception as e:  # pylint: disable=broad-except
            return {"failed": True, "changed": False, "msg": "unexpected error (%s: %s)" % (type(e).__name__, e)}

    order = []
    with ThreadPoolExecutor(max_workers=max(1, concurrency)) as pool:
        for host, prepared in calls:
            if isinstance(prepared, HostError):
                order.append((host, {"failed": True, "changed": False, "msg": str(prepared)}))
            else:
                order.append((host, pool.submit(guarded, prepared)))
        return dict((host, outcome.result() if hasattr(outcome, "result") else outcome) for host, outcome in order)


def aggregate(results_by_host):
    """The task's result from {host: result}: changed if any host changed, failed (naming every failed host and its
    error) if any host failed, per-host warnings lifted to the top once, per-host diffs as a list of diffs."""
    hosts = list(results_by_host)
    failed = [h for h in hosts if results_by_host[h].get("failed")]
    changed = [h for h in hosts if results_by_host[h].get("changed")]
    out = {"changed": bool(changed), "results_by_host": {}, "failed_hosts": failed,
           "fanout_summary": {"hosts": len(hosts), "ok": len(hosts) - len(failed), "failed": len(failed),
                              "changed": len(changed)}}
    warnings = {}
    deprecations = []
    diffs = []
    for host in hosts:
        res = dict(results_by_host[host])
        for warning in res.pop("warnings", None) or ():
            warnings.setdefault(warning, []).append(host)
        for deprecation in res.pop("deprecations", None) or ():
            if deprecation not in deprecations:
                deprecations.append(deprecation)
        for diff in _diff_list(res.get("diff")):
            diff = dict(diff)
            for side in ("before", "after"):
                header = diff.get(side + "_header")
                diff[side + "_header"] = "%s: %s" % (host, header) if header else "%s (%s)" % (host, side)
            diffs.append(diff)
        out["results_by_host"][host] = res
    if warnings:
        out["warnings"] = ["%s (%s: %s)" % (w, "host" if len(hs) == 1 else "hosts", ", ".join(hs))
                           for w, hs in warnings.items()]
    if not hosts:
        out["warnings"] = ["fanout lists no hosts: nothing ran"]
    if deprecations:
        out["deprecations"] = deprecations
    if diffs:
        out["diff"] = diffs
    if failed:
        out["failed"] = True
        details = ["%s: %s" % (h, _short(results_by_host[h].get("msg") or "failed")) for h in failed[:DETAILED_FAILURES]]
        more = failed[DETAILED_FAILURES:]
        out["msg"] = "fanout: %d of %d host(s) failed: %s%s" % (
            len(failed), len(hosts), "; ".join(details),
            "; also failed: %s (see results_by_host)" % ", ".join(more) if more else "")
    else:
        out["msg"] = "fanout: %d host(s) ok, %d changed" % (len(hosts), len(changed))
    return out


def _short(text):
    text = " ".join(str(text).split())
    return text if len(text) <= DETAIL_CHARS else text[:DETAIL_CHARS] + "..."


def _diff_list(diff):
    if isinstance(diff, collections.abc.Mapping):
        return [diff]
    if isinstance(diff, (list, tuple)):
        return [d for d in diff if isinstance(d, collections.abc.Mapping)]
    return []


# ---------------------------------------------------------------------------------------------------------------- Ansible

class _TaskView(object):
    """What fan-out needs from the running task, its variables and the inventory."""

    def __init__(self, action, task_vars):
        self.action = action
        self.task = action._task
        self.task_vars = task_vars or {}
        hostvars = self.task_vars.get("hostvars")
        self.variable_manager = self.task.get_variable_manager() or getattr(hostvars, "_variable_manager", None)
        self.inventory = getattr(self.variable_manager, "_inventory", None) or getattr(hostvars, "_inventory", None)
        if self.variable_manager is None or self.inventory is None:
            raise FanoutInputError("fanout could not reach the inventory's variables from this task (no variable "
                                   "manager); run it in a playbook")
        self.play = self.task.get_play() if hasattr(self.task, "get_play") else self.task._parent._play

    def is_host(self, name):
        return self.inventory.get_host(name) is not None

    def raw_layers(self):
        """[module_defaults layers..., args splat (template) or None, task args], untemplated."""
        from ansible.parsing.mod_args import ModuleArgsParser
        ds = self.task.get_ds()
        if not isinstance(ds, collections.abc.Mapping):
            raise FanoutInputError("fanout could not read this task's untemplated arguments (the task was not loaded "
                                   "from a playbook)")
        _action, args, _delegate_to = ModuleArgsParser(task_ds=ds, collection_list=self.task.collections).parse(
            skip_action_validation=True)
        args = dict(args)
        splat = args.pop("_variable_params", None)
        args = dict((k, v) for k, v in args.items() if not str(k).startswith("_ansible_"))
        action = self.task.resolved_action or self.task.action
        groups = (getattr(self.play, "_action_groups", None) or {}).get(action, [])
        return module_defaults_layer(self.task.module_defaults, action, groups) + [splat, args]

    def host_variables(self, name):
        host = self.inventory.get_host(name)
        kwargs = {}
        for key, var in (("_hosts", "ansible_play_batch"), ("_hosts_all", "ansible_play_hosts_all")):
            if isinstance(self.task_vars.get(var), list):
                kwargs[key] = list(self.task_vars[var])
        try:
            variables = self.variable_manager.get_vars(play=self.play, host=host, task=self.task, **kwargs)
        except TypeError:  # the private cache arguments went away: let the variable manager compute them
            variables = self.variable_manager.get_vars(play=self.play, host=host, task=self.task)
        loop_var = self.task_vars.get("ansible_loop_var")
        index_var = self.task_vars.get("ansible_index_var")
        for key in LOOP_VARIABLES + tuple(v for v in (loop_var, index_var) if isinstance(v, str)):
            if key in self.task_vars:
                variables[key] = self.task_vars[key]
        return variables

    def connection_of(self, variables, templar):
        if "ansible_connection" in variables:
            return str(templar.template(variables["ansible_connection"]))
        return str(self.task.connection or "ssh")


def _reuse_compiled_templates(templar):
    """Compile each template string once for all hosts: the task's option templates are the same for every host, only
    the variables differ, and Jinja compilation is most of the cost of templating them (ansible-core compiles per call).
    Rendering is unchanged (the compiled template is called with the current host's variables). Best effort: if the
    engine's internals differ, templating simply compiles every time, as ansible-core does."""
    engine = getattr(templar, "_engine", None)
    compile_template = getattr(engine, "_compile_template", None)
    if compile_template is None:
        return
    cache = {}

    def compile_once(template, options):
        try:
            key = (str(template), options)
            hash(key)
        except TypeError:
            return compile_template(template, options)
        compiled = cache.get(key)
        if compiled is None:
            compiled = cache[key] = compile_template(template, options)
        return compiled

    try:
        engine._compile_template = compile_once
    except AttributeError:
        pass


def run_fanout(action, args, task_vars):
    """The fan-out task's result (see module docs: results_by_host, failed_hosts, fanout_summary)."""
    from ansible_collections.kubegate.multicluster.plugins.plugin_utils._fastpath import _plain

    try:
        view = _TaskView(action, task_vars)
        hosts = check_hosts(args.get("fanout"), view.is_host)
        concurrency = check_concurrency(args.get("fanout_concurrency"))
        check_run_once(action._task.run_once, view.task_vars.get("ansible_play_batch"))
        layers = view.raw_layers()
    except FanoutInputError as e:
        raise AnsibleActionFail(str(e))
    # the running host's arguments validate as a whole first (bad options fail the task once, not per host)
    validated_here = action._validate(args)

    # First every host's variables and connection (nothing runs unless the whole list is usable) ...
    templar = action._templar.copy_with_new_env(available_variables=task_vars)
    _reuse_compiled_templates(templar)
    listed = []
    not_local = []
    for host in hosts:
        variables = view.host_variables(host)
        templar.available_variables = variables
        if not action._task.delegate_to:
            connection = view.connection_of(variables, templar)
            if connection not in LOCAL_CONNECTIONS:
                not_local.append("%s (%s)" % (host, connection))
        listed.append((host, variables))
    if not_local:
        raise AnsibleActionFail(
            "fanout runs every call from the controller, but these hosts use a connection that is not local, so "
            "their tasks would run elsewhere: %s. List only hosts with ansible_connection: local (cluster endpoints), "
            "or run this task per host without fanout." % ", ".join(not_local))

    # ... then each host's options, templated and validated as if the task ran on that host; its call starts at once.
    def prepared_calls():
        for host, variables in listed:
            templar.available_variables = variables
            try:
                host_args = _plain(layer_args(layers, templar.template, skip=FANOUT_OPTIONS))
                try:
                    prepared = action._validate(host_args)
                except AnsibleActionFail as e:
                    raise HostError("invalid options for this host: %s" % _error_text(e))
            except HostError as e:
                prepared = e
            except Exception as e:  # pylint: disable=broad-except
                # never abandon calls already in flight: this host fails alone, with the reason
                prepared = HostError("could not prepare this host's options: %s" % _error_text(e))
            yield host, prepared

    secrets = set(validated_here.no_log_values)

    def call(validated):
        out, hidden = action._call(validated)
        secrets.update(hidden)  # set.update is atomic under the GIL
        return out

    results = run_calls(prepared_calls(), call, concurrency)
    out = aggregate(results)
    invocation = dict(validated_here.params)
    out["invocation"] = {"module_args": invocation}
    return remove_values(out, secrets)
