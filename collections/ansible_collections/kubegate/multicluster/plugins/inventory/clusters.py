# -*- coding: utf-8 -*-
# Copyright: kubegate contributors
# Apache License 2.0 (see LICENSE)
from __future__ import annotations

DOCUMENTATION = r"""
name: clusters
short_description: Kubernetes clusters as inventory hosts, grouped by tenant, region and access path
version_added: 0.1.0
description:
  - Builds one inventory host per Kubernetes cluster from a cluster registry (tenants, their clusters, how each
    apiserver is reached) and/or from the contexts of kubeconfig files, with the C(kubegate_*) connection variables
    the kubegate playbooks map onto the cluster modules with one C(module_defaults) entry for
    C(group/kubegate.multicluster.cluster).
  - "Groups: one per tenant (named like the tenant, so C(group_vars/<tenant>.yml) applies; see
    O(tenant_group_prefix)), C(region_<region>) and C(access_<path>) (C(access_direct), C(access_tunnel),
    C(access_jump), C(access_proxy)). Characters other than letters, digits and C(_) in region and access group
    names become C(_)."
  - "Host names: the cluster name. When the same cluster name appears in more than one tenant, each of those hosts is
    named C(<tenant>-<cluster>) instead (with a warning), so no tenant's cluster silently replaces another's; set
    O(host_naming=tenant_cluster) to always use C(<tenant>-<cluster>). C(kubegate_cluster) always holds the plain
    cluster name. The same cluster twice within one tenant is an error."
  - "Host variables set for every host: C(ansible_connection=local) and C(ansible_python_interpreter) (a cluster is
    reached through its apiserver, not over ssh; see O(connection_vars)), C(kubegate_tenant), C(kubegate_cluster),
    C(kubegate_access) and, when known, C(kubegate_region) and C(kubegate_apiserver) (the apiserver URL itself, also
    when it is reached through a tunnel or a kubectl proxy)."
  - "Connection variables: C(kubegate_host) (the URL to talk to: the apiserver, the local end of the tunnel, or the
    kubectl proxy), C(kubegate_ca_cert), C(kubegate_tls_server_name), C(kubegate_token), C(kubegate_kubeconfig),
    C(kubegate_context), C(kubegate_client_cert)/C(kubegate_client_key), C(kubegate_jump) (access C(jump): the
    cluster's C(jump) settings, for the modules' C(ssh_jump) option). Data for the tunnel and proxy roles: C(kubegate_tunnel) (access C(tunnel):
    C(jump_host), C(jump_port), C(jump_user), C(local_address), C(local_port), C(apiserver) as C(HOST:PORT), and
    C(key_file)/C(known_hosts) when given) and C(kubegate_kubectl_proxy) (access C(proxy): C(address), C(port)).
    C(kubegate_routing_maps) when the registry gives C(routing), plus any registry C(vars)."
  - Variables set by this plugin are inventory host variables, so they take precedence over C(group_vars/*) files of
    the same inventory (and C(host_vars/*) files take precedence over them).
  - "Registry schema (version 1): C(tenants) maps a tenant name (letters, digits, C(_)) to C({clusters: {NAME:
    SETTINGS}}); optional C(defaults) and per-tenant settings are inherited by every cluster (the cluster's own
    settings win; C(jump), C(tunnel), C(proxy) and C(vars) merge key by key). Cluster settings: C(apiserver)
    (C(https://HOST[:PORT]), required unless C(context) is given), C(ca_file), C(tls_server_name), C(region),
    C(access) (C(direct) default, C(tunnel), C(jump) or C(proxy)), one of C(token) (a C(!vault) value or a template,
    never plain text), C(token_var) (name of a, typically vaulted, variable holding the token) or C(token_file) (a
    plain or vault-encrypted file, read when a task runs), C(client_cert) and C(client_key) (PEM files of a client
    certificate), C(kubeconfig) and C(context) (credentials from a
    kubeconfig context), C(jump) (C(host), C(port), C(user), C(key_file), C(known_hosts), C(connect_timeout)),
    C(tunnel) (C(jump_host), C(jump_port), C(jump_user), C(local_address), C(local_port), C(key_file),
    C(known_hosts)), C(proxy) (C(address), C(port)), C(routing) (the nginx maps as a list, or the path of a YAML file
    holding that list or a mapping with C(kubegate_routing_maps); validated with the collection's map validator) and
    C(vars) (more host variables). Relative paths are relative to the file they are written in."
  - "Access paths: C(direct) connects to C(apiserver). C(jump) connects to C(apiserver) through an in-process ssh
    forward (C(kubegate_jump)). C(tunnel) connects to C(https://local_address:local_port), the local end of an ssh
    tunnel service, verifying the certificate against C(tls_server_name) (default the apiserver's host name).
    C(proxy) connects to a kubectl proxy at C(http://address:port), which authenticates on kubegate's behalf (no
    credentials are sent to it; pod exec usually does not pass a kubectl proxy)."
  - A malformed registry or kubeconfig source fails with a message naming the file, tenant, cluster and field and
    what to do. Kubeconfig contexts whose tenant cannot be determined are skipped with a warning (an error with
    O(strict=true)).
  - The inventory source is a YAML file whose name ends in C(kubegate.yml) or C(kubegate.yaml) (for example
    C(inventories/globex/clusters.kubegate.yml)). Enable the plugin in C(ansible.cfg)
    (C([inventory] enable_plugins)), as the kubegate project's C(ansible.cfg) does.
author: kubegate developers (@kubegate)
extends_documentation_fragment:
  - ansible.builtin.constructed
  - ansible.builtin.inventory_cache
options:
  plugin:
    description: Marks this file as a source for this plugin.
    type: str
    required: true
    choices: [kubegate.multicluster.clusters]
  registry:
    description:
      - The cluster registry, inline (a mapping, see the schema above) or the path of a YAML file holding it
        (relative to this inventory source file). The file may contain C(!vault) values (give the vault password to
        C(ansible-inventory)/C(ansible-playbook) as usual).
    type: raw
  kubeconfig:
    description:
      - Kubeconfig files whose contexts become cluster hosts (each context one host, credentials left in the
        kubeconfig and used through C(kubegate_kubeconfig)/C(kubegate_context)). A mapping, or a list of them.
      - "C(path): a kubeconfig path or a list of paths merged like C(KUBECONFIG) (relative to this file; default
        C(KUBECONFIG), else C(~/.kube/config)). C(contexts): context names or regular expressions to include (default
        all). The tenant of a context comes from C(tenant_map) (context -> tenant), else C(tenant_pattern) (a regular
        expression with a named group C(tenant) and optionally C(cluster) and C(region), matched against the context
        name; C(cluster) then names the host), else C(tenant). The region likewise from C(region_map), the pattern's
        C(region) group, else C(region). C(vars): more host variables for these hosts."
    type: raw
  host_naming:
    description:
      - C(cluster) names each host after its cluster and uses C(<tenant>-<cluster>) only for cluster names that more
        than one tenant uses. C(tenant_cluster) always uses C(<tenant>-<cluster>).
    type: str
    default: cluster
    choices: [cluster, tenant_cluster]
  tenant_group_prefix:
    description:
      - Prefix of the tenant groups. Empty by default, so the group is the tenant's name and
        C(group_vars/<tenant>.yml) applies (as in C(inventories/lab)); C(tenant_) gives C(tenant_acme).
    type: str
    default: ""
  region_group_prefix:
    description: Prefix of the region groups.
    type: str
    default: region_
  access_group_prefix:
    description: Prefix of the access path groups.
    type: str
    default: access_
  connection_vars:
    description:
      - Set C(ansible_connection=local) and C(ansible_python_interpreter={{ ansible_playbook_python }}) on every host
        (the cluster modules run on the controller and talk HTTPS to the apiserver). Turn off only to set them
        yourself.
    type: bool
    default: true
notes:
  - Caching (O(cache=true)) keeps the names and server URLs read from kubeconfig files (never credentials); the
    registry is read on every run (it is small, and it may hold vault-encrypted values that must not be cached).
  - In AWX/Automation Platform, use a project-sourced inventory source pointing at the C(*.kubegate.yml) file; the
    project's C(ansible.cfg) enables the plugin and C(collections/) holds the collection.
seealso:
  - name: kubegate tenant inventories
    description: docs/tenants.md in the kubegate project (layout, vault, the registry in practice).
    link: https://example.invalid/kubegate/kubegate/docs/tenants.md
"""

EXAMPLES = r"""
# inventories/globex/clusters.kubegate.yml -- registry inline
plugin: kubegate.multicluster.clusters
registry:
  tenants:
    globex:
      region: eu-central
      clusters:
        cluster-c:
          apiserver: https://198.18.3.2:6443
          ca_file: /etc/kubegate/globex/cluster-c/ca.crt
          tls_server_name: cluster-c
          access: jump
          jump: {host: 198.18.2.2, user: kglab-tunnel, key_file: ~/.ssh/kubegate_edge,
                 known_hosts: /etc/kubegate/globex/edge_known_hosts}
          token_var: vault_globex_cluster_c_token      # defined, vault-encrypted, in group_vars/host_vars

---
# platform.kubegate.yml -- every tenant from one registry file, plus the contexts of a kubeconfig
plugin: kubegate.multicluster.clusters
registry: /etc/kubegate/registry.yml
kubeconfig:
  path: /etc/kubegate/kubeconfig
  contexts: ['^team-.*']
  tenant_pattern: '^team-(?P<tenant>[a-z0-9_]+)-(?P<cluster>.+)$'
keyed_groups:
  - key: kubegate_region
    prefix: dc
compose:
  kubegate_timeout: "10"                     # a Jinja expression

---
# /etc/kubegate/registry.yml
defaults:
  access: direct
tenants:
  acme:
    region: eu-west
    routing: routing/acme.yml                        # nginx maps, same schema as group_vars kubegate_routing_maps
    clusters:
      prod-eu-1:
        apiserver: https://10.0.12.5:6443
        ca_file: pki/prod-eu-1-ca.crt
        token_file: secrets/prod-eu-1.token.vault    # vault-encrypted file, decrypted when a task runs
      prod-eu-2:
        apiserver: https://10.0.40.9:6443
        ca_file: pki/prod-eu-2-ca.crt
        access: tunnel                               # ssh tunnel service on this controller (role ssh_tunnel)
        tunnel: {jump_host: 10.0.40.2, jump_user: kubegate-tunnel, local_port: 16443}
        token: !vault |
          $ANSIBLE_VAULT;1.1;AES256
          ...
"""

import os

from ansible.errors import AnsibleError, AnsibleParserError
from ansible.module_utils.common.text.converters import to_native
from ansible.plugins.inventory import BaseInventoryPlugin, Cacheable, Constructable

try:
    from ansible.template import trust_as_template
except ImportError:  # pragma: no cover - ansible-core < 2.19 has no trust model
    def trust_as_template(value):
        return value

from ansible_collections.kubegate.multicluster.plugins.module_utils._nginx_map import validate as validate_maps
from ansible_collections.kubegate.multicluster.plugins.plugin_utils import _registry

SUFFIXES = ("kubegate.yml", "kubegate.yaml")


def _trusted(value):
    """Strings (in containers too) marked trusted for templating; anything else (a !vault value) untouched."""
    if isinstance(value, dict):
        return dict((k, _trusted(v)) for k, v in value.items())
    if isinstance(value, list):
        return [_trusted(v) for v in value]
    if isinstance(value, str):
        return trust_as_template(value)
    return value


class InventoryModule(BaseInventoryPlugin, Constructable, Cacheable):

    NAME = "kubegate.multicluster.clusters"

    def verify_file(self, path):
        return super(InventoryModule, self).verify_file(path) and path.endswith(SUFFIXES)

    def parse(self, inventory, loader, path, cache=True):
        super(InventoryModule, self).parse(inventory, loader, path, cache)
        try:
            self._read_config_data(path)
        except AnsibleError as exc:
            hint = getattr(exc, "_help_text", None) or ""
            detail = to_native(exc.message) + ((" " + hint) if hint else "")
            raise AnsibleParserError("kubegate.multicluster.clusters: %s: %s" % (path, detail)) from None
        try:
            records = self._records(path, cache)
            collisions = _registry.assign_names(records, self.get_option("host_naming"))
        except _registry.RegistryError as exc:
            raise AnsibleParserError("kubegate.multicluster.clusters: %s" % exc) from None
        if collisions and self.get_option("host_naming") == "cluster":
            self.display.warning("kubegate.multicluster.clusters: %s: cluster name(s) %s are used by more than one "
                                 "tenant; those hosts are named <tenant>-<cluster>" % (path, ", ".join(collisions)))
        if not records:
            self.display.warning("kubegate.multicluster.clusters: %s defines no clusters" % path)
        for record in records:
            self._add(record)

    # -------------------------------------------------------------------------------------------------------- sources

    def _records(self, path, cache):
        base_dir = os.path.dirname(os.path.abspath(path))
        registry = self.get_option("registry")
        kubeconfig = self.get_option("kubeconfig")
        if registry is None and kubeconfig is None:
            raise _registry.RegistryError("%s: give `registry` (inline or a path) and/or `kubeconfig` (which contexts "
                                          "become clusters)" % path)
        records = []
        if registry is not None:
            source, reg_dir = path, base_dir
            if isinstance(registry, str):
                source = os.path.expanduser(_registry.resolve_path(registry, base_dir))
                if not os.path.isfile(source):
                    raise _registry.RegistryError("%s: registry file %s not found (relative paths are relative to the "
                                                  "inventory source file)" % (path, source))
                registry = self._load(source)
                reg_dir = os.path.dirname(source)
            records += _registry.parse_registry(registry, source, reg_dir, template=trust_as_template,
                                                load_file=self._load, validate_maps=validate_maps)
        entries = _registry.kubeconfig_sources(kubeconfig, path)
        if entries:
            records += self._kubeconfig_records(path, base_dir, entries, cache)
        return records

    def _load(self, path):
        try:
            return self.loader.load_from_file(path, cache="none", trusted_as_template=True)
        except TypeError:  # pragma: no cover - ansible-core < 2.19
            return self.loader.load_from_file(path, cache="none")
        except Exception as exc:
            raise _registry.RegistryError("%s cannot be read: %s" % (path, to_native(getattr(exc, "message", exc))))

    def _kubeconfig_records(self, path, base_dir, entries, cache):
        strict = self.get_option("strict")
        use_cache = self.get_option("cache")
        cache_key = self.get_cache_key(path)
        cached = {}
        if use_cache and cache:
            try:
                cached = self._cache[cache_key] or {}
            except KeyError:
                cached = {}
        fresh = {}
        records = []
        for field, entry in entries:
            where = _registry.Where(path)
            paths = _registry.kubeconfig_paths(entry, field, where, base_dir, os.environ)
            if not paths:
                raise _registry.RegistryError("%s: %s: no kubeconfig found (no path given, KUBECONFIG unset and "
                                              "~/.kube/config missing); set %s.path" % (path, field, field))
            stamp = "|".join("%s:%s" % (p, os.stat(p).st_mtime_ns) for p in paths)
            hit = cached.get(stamp)
            contexts = hit if isinstance(hit, dict) else _registry.summarise_kubeconfigs(paths, self._load_plain)
            fresh[stamp] = contexts
            records += _registry.kubeconfig_records(entry, field, path, paths, contexts, self.display.warning, strict)
        if use_cache and fresh != cached:
            self._cache[cache_key] = fresh
        return records

    @staticmethod
    def _load_plain(path):
        """Kubeconfigs are read as plain YAML (no templating trust, no vault)."""
        import yaml
        with open(path, "rb") as f:
            return yaml.safe_load(f)

    # -------------------------------------------------------------------------------------------------------- hosts

    def _add(self, record):
        name = record["name"]
        self.inventory.add_host(name)
        hostvars = dict(record["hostvars"])
        if record.get("trusted"):
            # Everything here comes from the registry (a file the operator writes, like a YAML inventory): trusted
            # for templating, as a YAML inventory's values are. Values read from kubeconfig files are not.
            hostvars = _trusted(hostvars)
        if self.get_option("connection_vars"):
            hostvars.setdefault("ansible_connection", trust_as_template("local"))
            hostvars.setdefault("ansible_python_interpreter", trust_as_template("{{ ansible_playbook_python }}"))
        for key, value in hostvars.items():
            self.inventory.set_variable(name, key, value)
        groups = [_registry.group_name(self.get_option("tenant_group_prefix"), record["tenant"]),
                  _registry.group_name(self.get_option("access_group_prefix"), record["access"])]
        if record["region"]:
            groups.append(_registry.group_name(self.get_option("region_group_prefix"), record["region"]))
        for group in groups:
            self.inventory.add_group(group)
            self.inventory.add_child(group, name)
        strict = self.get_option("strict")
        variables = self.inventory.get_host(name).get_vars()
        self._set_composite_vars(self.get_option("compose"), variables, name, strict=strict)
        self._add_host_to_composed_groups(self.get_option("groups"), variables, name, strict=strict)
        self._add_host_to_keyed_groups(self.get_option("keyed_groups"), variables, name, strict=strict)
