"""kubernetes_sd_configs validation: the checks and wording of Prometheus 2.42's SDConfig.UnmarshalYAML, the
no-files rule (kubeconfig_file needs the flag, in-cluster config does not), and the selector grammar."""

from __future__ import annotations

import pytest

from service.config.errors import ConfigError
from service.metrics.config import GlobalConfig, apply_defaults, parse_instance
from service.metrics.config.kubernetes_selectors import (
    field_selector_text,
    label_selector_text,
    parse_field_selector,
    parse_label_selector,
)
from service.metrics.config.validate import check_reading_files


def parse(text: str):
    return parse_instance(text, "cfg")


def _sd(snippet: str):
    cfg = parse(f"scrape_configs:\n- job_name: a\n  kubernetes_sd_configs:\n  - {snippet}\n")
    return cfg.scrape_configs[0].kubernetes_sd_configs[0]


def _error(snippet: str) -> str:
    with pytest.raises(ConfigError) as exc:
        _sd(snippet)
    return str(exc.value)


@pytest.mark.parametrize(("snippet", "message"), [
    ("{rolee: pod}", "field rolee not found in type kubernetes.plain"),
    ("{}", "role missing (one of: pod, service, endpoints, endpointslice, node, ingress)"),
    ("{role: pods}", 'unknown Kubernetes SD role "pods"'),
    ("{role: pod, api_server: 'http://a', kubeconfig_file: /k}",
     "cannot use 'kubeconfig_file' and 'api_server' simultaneously"),
    ("{role: pod, kubeconfig_file: /k, bearer_token: t}",
     "cannot use a custom HTTP client configuration together with 'kubeconfig_file'"),
    ("{role: pod, bearer_token: t}",
     "to use custom HTTP client configuration please provide the 'api_server' URL explicitly"),
    ("{role: pod, follow_redirects: false}",
     "to use custom HTTP client configuration please provide the 'api_server' URL explicitly"),
    ("{role: pod, api_server: 'http://a', namespaces: {own_namespace: true}}",
     "cannot use 'api_server' and 'namespaces.own_namespace' simultaneously"),
    ("{role: pod, kubeconfig_file: /k, namespaces: {own_namespace: true}}",
     "cannot use 'kubeconfig_file' and 'namespaces.own_namespace' simultaneously"),
    ("{role: pod, selectors: [{role: node}]}", "pod role supports only pod selectors"),
    ("{role: endpoints, selectors: [{role: node}]}", "endpoints role supports only pod, service, endpoints selectors"),
    ("{role: endpointslice, selectors: [{role: ingress}]}",
     "endpointslice role supports only pod, service, endpointslice selectors"),
    ("{role: pod, selectors: [{role: pod}, {role: pod}]}", "duplicated selector role: pod"),
    ("{role: pod, selectors: [{role: pods}]}", 'unknown Kubernetes SD role "pods"'),
    ("{role: pod, selectors: [{role: pod, label: 'a in (b'}]}", "found '', expected: ')'"),
    ("{role: pod, selectors: [{role: pod, label: 'a=-b-'}]}", "unable to parse requirement"),
    ("{role: pod, selectors: [{role: pod, field: 'spec.nodeName'}]}",
     "invalid selector: 'spec.nodeName'; can't understand 'spec.nodeName'"),
    ("{role: pod, selectors: [{role: pod, sel: x}]}", "field sel not found in type kubernetes.SelectorConfig"),
    ("{role: pod, namespaces: {name: [a]}}", "field name not found in type kubernetes.plain"),
    ("{role: pod, attach_metadata: {nodes: true}}", "field nodes not found in type kubernetes.AttachMetadataConfig"),
])
def test_invalid_blocks_are_refused_with_prometheus_wording(snippet: str, message: str) -> None:
    assert message in _error(snippet)


def test_valid_block_decodes_every_field() -> None:
    sd = _sd("{role: endpoints, api_server: 'https://127.0.0.1:6443', authorization: {credentials: t},"
             " tls_config: {insecure_skip_verify: true}, namespaces: {names: [a, b]},"
             " selectors: [{role: pod, label: 'app in (x,y),!canary', field: 'spec.nodeName=n1'},"
             " {role: service, label: team=a}], attach_metadata: {node: true}}")
    assert sd.role == "endpoints" and sd.api_server == "https://127.0.0.1:6443"
    assert sd.namespace_names == ["a", "b"] and sd.attach_node_metadata
    assert sd.selector_for("pod") == ("app in (x,y),!canary", "spec.nodeName=n1")
    assert sd.selector_for("endpoints") == ("", "")
    assert not sd.in_cluster


def test_in_cluster_needs_no_flag_but_kubeconfig_does() -> None:
    ok = apply_defaults(parse("scrape_configs:\n- job_name: a\n  kubernetes_sd_configs: [{role: pod}]\n"),
                        GlobalConfig())
    check_reading_files(ok)  # the fixed service account files are allowed
    bad = apply_defaults(parse("scrape_configs:\n- job_name: a\n  kubernetes_sd_configs:\n"
                               "  - {role: pod, kubeconfig_file: /etc/kube}\n"), GlobalConfig())
    with pytest.raises(ConfigError, match="kubeconfig_file must be empty unless dangerous_allow_reading_files"):
        check_reading_files(bad)
    tls = apply_defaults(parse("scrape_configs:\n- job_name: a\n  kubernetes_sd_configs:\n"
                               "  - {role: pod, api_server: 'https://k', tls_config: {ca_file: /ca}}\n"),
                         GlobalConfig())
    with pytest.raises(ConfigError, match="ca_file must be empty"):
        check_reading_files(tls)


def test_label_selector_grammar() -> None:
    reqs = parse_label_selector("tier notin (b, a), app=x,!gone, env==prod, has, v>3")
    assert label_selector_text(reqs) == "app=x,env=prod,!gone,has,tier notin (a,b),v>3"
    assert parse_label_selector("") == ()
    for bad in ("a in b", "=x", "a=b c", "x/y/z=1", "a,,b"):
        with pytest.raises(ConfigError):
            parse_label_selector(bad)


def test_field_selector_grammar() -> None:
    terms = parse_field_selector(r"status.phase!=Failed,metadata.name==a\,b")
    assert terms == (("metadata.name", "=", "a,b"), ("status.phase", "!=", "Failed"))
    assert field_selector_text(terms) == r"metadata.name=a\,b,status.phase!=Failed"
    with pytest.raises(ConfigError, match="invalid escape"):
        parse_field_selector(r"a=b\x")
