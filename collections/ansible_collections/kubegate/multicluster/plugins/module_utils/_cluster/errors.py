# -*- coding: utf-8 -*-
# Copyright: kubegate contributors
# Apache License 2.0 (see LICENSE)
"""The collection's one exception type and the mapping of apiserver answers to clear messages.

Every failure a user can meet (bad input, unreachable apiserver, TLS, 401/403/404/409/422, timeouts) is raised as a
KubegateError whose message says what went wrong, where (cluster and address), and what to do. Modules and the action
fast path turn it into a failed task; nothing else is caught. Messages never contain credentials.
"""
from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json

# `fanout` outside the controller fast path (the action plugin refuses before shipping, the module refuses itself).
FANOUT_REFUSED = ("fanout runs only on the controller, in the action plugin's fast path, but {why}. Fast path "
                  "conditions: a local connection (no delegate_to a non-local host), no become, no async, "
                  "KUBEGATE_NO_FASTPATH unset. Change the task accordingly, or drop fanout and let the task run once "
                  "per inventory host.")


class KubegateError(Exception):
    """A failure with a user-facing message. `details` are extra result keys (status, reason, ...) safe to return."""

    def __init__(self, msg, **details):
        super(KubegateError, self).__init__(msg)
        self.msg = msg
        self.details = dict((k, v) for k, v in details.items() if v is not None)

    @property
    def status(self):
        return self.details.get("status")

    def result(self):
        out = dict(self.details)
        out["msg"] = self.msg
        return out


def parse_status_body(body):
    """A metav1.Status (or any JSON object) from a response body, or None."""
    if not body:
        return None
    try:
        data = json.loads(body.decode("utf-8", "replace") if isinstance(body, bytes) else body)
    except ValueError:
        return None
    return data if isinstance(data, dict) else None


def _snippet(body, limit=300):
    if not body:
        return ""
    text = body.decode("utf-8", "replace") if isinstance(body, bytes) else str(body)
    text = " ".join(text.split())
    return text[:limit] + ("..." if len(text) > limit else "")


def http_error(where, method, path, status, body, reason_phrase=""):
    """KubegateError for an HTTP answer that was not accepted. `where` names the cluster and address."""
    st = parse_status_body(body) or {}
    message = st.get("message") if st.get("kind") == "Status" or "message" in st else None
    message = message or _snippet(body) or reason_phrase or "no message"
    reason = st.get("reason")
    details = st.get("details") if isinstance(st.get("details"), dict) else None
    request = "%s %s" % (method, path)
    if status == 401:
        msg = ("%s: the apiserver rejected the credentials (401 Unauthorized) for %s: the token is invalid or expired, "
               "or the client certificate is not signed by the cluster's client CA. Check api_key / the kubeconfig user."
               % (where, request))
    elif status == 403:
        msg = ("%s: forbidden (403) for %s: %s. Grant the named verb on that resource to this identity (a Role/"
               "ClusterRole and binding), or use an identity that has it." % (where, request, message))
    elif status == 404:
        msg = "%s: not found (404) for %s: %s" % (where, request, message)
    elif status == 405:
        msg = "%s: method not allowed (405) for %s: %s" % (where, request, message)
    elif status == 409:
        msg = "%s: conflict (409) for %s: %s" % (where, request, message)
    elif status == 422:
        msg = "%s: the apiserver rejected the object as invalid (422) for %s: %s" % (where, request, message)
    elif status == 429:
        msg = "%s: too many requests (429) for %s, still throttled after retries: %s" % (where, request, message)
    elif status == 503 and "no endpoints available" in message:
        msg = ("%s: the service has no ready endpoints (503) for %s: %s. Check that the service's pods are Ready and "
               "that its selector matches them." % (where, request, message))
    else:
        msg = "%s: HTTP %s for %s: %s" % (where, status, request, message)
    return KubegateError(msg, status=status, reason=reason, details=details)


def internal_error_message(module, exc):
    """Message for an unexpected exception (a kubegate bug): no traceback, but enough to report it."""
    return ("kubegate.multicluster.%s hit an unexpected error (%s: %s). This is a bug in kubegate; please report it "
            "with the task that triggered it (run with -vvv and KUBEGATE_NO_FASTPATH=1 for the module's traceback)."
            % (module, type(exc).__name__, exc))
