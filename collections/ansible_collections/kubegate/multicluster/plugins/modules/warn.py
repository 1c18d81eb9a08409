#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: kubegate contributors
# Apache License 2.0 (see LICENSE)
from __future__ import annotations

DOCUMENTATION = r"""
module: warn
short_description: Print Ansible warnings from a playbook or role
version_added: 0.1.0
description:
  - Adds each message as a real Ansible warning (a C([WARNING]) line and an entry in the task result's C(warnings)),
    unlike M(ansible.builtin.debug), whose output is easy to miss and invisible to tools that collect warnings.
  - Used by the C(kubectl_proxy) role for its dangerous settings. Runs on the controller; never changes anything.
  - This module is implemented as an action plugin only; it does not belong to the C(cluster) action group.
author: kubegate developers (@kubegate)
attributes:
  check_mode:
    description: Can run in check mode.
    support: full
  diff_mode:
    description: Returns no diff.
    support: none
  platform:
    description: Runs on the controller.
    support: full
    platforms: all
options:
  msg:
    description: The warning, or a list of warnings.
    type: raw
    required: true
"""

EXAMPLES = r"""
- name: Warn about an insecure setting
  kubegate.multicluster.warn:
    msg: "proxy_address=0.0.0.0 exposes the cluster to everyone on the network"
  when: proxy_address != '127.0.0.1'
"""

RETURN = r"""
warnings:
  description: The messages, printed as warnings.
  returned: always
  type: list
  elements: str
"""
