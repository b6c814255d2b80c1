#!/usr/bin/env python3
"""Validates Kubernetes manifests offline.

Built-in kinds go through kubernetes-validate (the Kubernetes OpenAPI schemas,
strict: unknown fields are errors). kubernetes-validate carries no CRD schemas,
so the custom resources (Argo Rollouts' Rollout and AnalysisTemplate, Flagger's
Canary, Gateway API's HTTPRoute) are checked against the schemas below: the
fields these manifests use, with types, enums and required keys taken from the
projects' published CRDs (argo-rollouts manifests/crds, flagger
artifacts/flagger/crd.yaml, gateway-api standard-install), closed with
additionalProperties: false wherever the published schema is closed or the
level is fully listed, so a misspelt field fails.

usage: validate_manifests.py FILE... ; exit 0 when every document is valid,
1 with one line per problem otherwise.
"""

import sys

import jsonschema
import kubernetes_validate
import yaml

STR = {"type": "string"}
INT = {"type": "integer"}
INT_OR_STR = {"anyOf": [{"type": "integer"}, {"type": "string"}]}
STR_MAP = {"type": "object", "additionalProperties": {"type": "string"}}
METADATA = {
    "type": "object",
    "required": ["name"],
    "properties": {
        "name": STR,
        "namespace": STR,
        "labels": STR_MAP,
        "annotations": STR_MAP,
    },
    "additionalProperties": False,
}


def closed(properties, required=()):
    return {
        "type": "object",
        "properties": properties,
        "required": list(required),
        "additionalProperties": False,
    }


def resource(api_version, kind, spec):
    return closed(
        {
            "apiVersion": {"const": api_version},
            "kind": {"const": kind},
            "metadata": METADATA,
            "spec": spec,
        },
        ["apiVersion", "kind", "metadata", "spec"],
    )


# Argo Rollouts v1alpha1 (manifests/crds/analysis-template-crd.yaml).
WEB_PROVIDER = closed(
    {
        "url": STR,
        "method": {"enum": ["GET", "POST", "PUT"]},
        "headers": {"type": "array", "items": closed({"key": STR, "value": STR}, ["key", "value"])},
        "body": STR,
        "jsonBody": {"type": "object"},
        "timeoutSeconds": INT,
        "jsonPath": STR,
        "insecure": {"type": "boolean"},
    },
    ["url"],
)
ANALYSIS_ARG = closed(
    {
        "name": STR,
        "value": STR,
        "valueFrom": closed(
            {
                "podTemplateHashValue": {"enum": ["Stable", "Latest"]},
                "fieldRef": closed({"fieldPath": STR}, ["fieldPath"]),
                "secretKeyRef": closed({"name": STR, "key": STR}, ["name", "key"]),
            }
        ),
    },
    ["name"],
)
ANALYSIS_TEMPLATE = resource(
    "argoproj.io/v1alpha1",
    "AnalysisTemplate",
    closed(
        {
            "args": {"type": "array", "items": ANALYSIS_ARG},
            "dryRun": {"type": "array"},
            "measurementRetention": {"type": "array"},
            "metrics": {
                "type": "array",
                "minItems": 1,
                "items": closed(
                    {
                        "name": STR,
                        "interval": STR,
                        "initialDelay": STR,
                        "count": INT_OR_STR,
                        "successCondition": STR,
                        "failureCondition": STR,
                        "failureLimit": INT_OR_STR,
                        "inconclusiveLimit": INT_OR_STR,
                        "consecutiveErrorLimit": INT_OR_STR,
                        "provider": {
                            "type": "object",
                            "minProperties": 1,
                            "properties": {"web": WEB_PROVIDER},
                        },
                    },
                    ["name", "provider"],
                ),
            },
        },
        ["metrics"],
    ),
)
ROLLOUT_STEP = {
    "type": "object",
    "minProperties": 1,
    "maxProperties": 1,
    "properties": {
        "setWeight": {"type": "integer", "minimum": 0, "maximum": 100},
        "pause": closed({"duration": INT_OR_STR}),
        "analysis": {"type": "object"},
        "experiment": {"type": "object"},
        "setCanaryScale": {"type": "object"},
        "setHeaderRoute": {"type": "object"},
        "setMirrorRoute": {"type": "object"},
        "plugin": {"type": "object"},
    },
    "additionalProperties": False,
}
ROLLOUT = resource(
    "argoproj.io/v1alpha1",
    "Rollout",
    closed(
        {
            "replicas": INT,
            "revisionHistoryLimit": INT,
            "progressDeadlineSeconds": INT,
            "minReadySeconds": INT,
            "paused": {"type": "boolean"},
            "selector": {"type": "object"},
            "template": {"type": "object"},
            "workloadRef": closed(
                {
                    "apiVersion": STR,
                    "kind": STR,
                    "name": STR,
                    "scaleDown": {"enum": ["never", "onsuccess", "progressively"]},
                }
            ),
            "strategy": closed(
                {
                    "canary": closed(
                        {
                            "canaryService": STR,
                            "stableService": STR,
                            "maxSurge": INT_OR_STR,
                            "maxUnavailable": INT_OR_STR,
                            "trafficRouting": {"type": "object"},
                            "analysis": closed(
                                {
                                    "templates": {
                                        "type": "array",
                                        "items": closed(
                                            {"templateName": STR, "clusterScope": {"type": "boolean"}},
                                            ["templateName"],
                                        ),
                                    },
                                    "args": {"type": "array", "items": ANALYSIS_ARG},
                                    "startingStep": INT,
                                },
                                ["templates"],
                            ),
                            "steps": {"type": "array", "items": ROLLOUT_STEP},
                        }
                    ),
                    "blueGreen": {"type": "object"},
                }
            ),
        },
        ["selector"],
    ),
)

# Flagger v1beta1 (artifacts/flagger/crd.yaml).
CANARY = resource(
    "flagger.app/v1beta1",
    "Canary",
    closed(
        {
            "provider": STR,
            "metricsServer": STR,
            "targetRef": closed({"apiVersion": STR, "kind": STR, "name": STR}, ["apiVersion", "kind", "name"]),
            "autoscalerRef": {"type": "object"},
            "ingressRef": {"type": "object"},
            "routeRef": {"type": "object"},
            "upstreamRef": {"type": "object"},
            "progressDeadlineSeconds": {"type": "number"},
            "skipAnalysis": {"type": "boolean"},
            "revertOnDeletion": {"type": "boolean"},
            "service": {
                "type": "object",
                "required": ["port"],
                "properties": {
                    "name": STR,
                    "port": {"type": "number"},
                    "portName": STR,
                    "targetPort": INT_OR_STR,
                    "gatewayRefs": {
                        "type": "array",
                        "items": closed({"name": STR, "namespace": STR, "sectionName": STR, "group": STR, "kind": STR}, ["name"]),
                    },
                    "hosts": {"type": "array", "items": STR},
                },
            },
            "analysis": closed(
                {
                    "interval": STR,
                    "iterations": {"type": "number"},
                    "threshold": {"type": "number"},
                    "maxWeight": {"type": "number"},
                    "stepWeight": {"type": "number"},
                    "stepWeights": {"type": "array", "items": {"type": "number"}},
                    "stepWeightPromotion": {"type": "number"},
                    "mirror": {"type": "boolean"},
                    "mirrorWeight": {"type": "number"},
                    "match": {"type": "array"},
                    "metrics": {"type": "array"},
                    "alerts": {"type": "array"},
                    "webhooks": {
                        "type": "array",
                        "items": closed(
                            {
                                "name": STR,
                                "type": {
                                    "enum": [
                                        "",
                                        "confirm-rollout",
                                        "pre-rollout",
                                        "rollout",
                                        "confirm-promotion",
                                        "post-rollout",
                                        "event",
                                        "rollback",
                                        "confirm-traffic-increase",
                                    ]
                                },
                                "url": {"type": "string", "format": "url"},
                                "timeout": {"type": "string", "pattern": "^[0-9]+(m|s)"},
                                "muteAlert": {"type": "boolean"},
                                "metadata": STR_MAP,
                            },
                            ["name", "url"],
                        ),
                    },
                }
            ),
        },
        ["targetRef", "service"],
    ),
)

# Gateway API v1 (standard-install.yaml), the fields these manifests use.
BACKEND_REF = closed(
    {
        "group": STR,
        "kind": STR,
        "name": STR,
        "namespace": STR,
        "port": {"type": "integer", "minimum": 1, "maximum": 65535},
        "weight": {"type": "integer", "minimum": 0, "maximum": 1000000},
        "filters": {"type": "array"},
    },
    ["name"],
)
HTTP_ROUTE = resource(
    "gateway.networking.k8s.io/v1",
    "HTTPRoute",
    closed(
        {
            "parentRefs": {
                "type": "array",
                "maxItems": 32,
                "items": closed(
                    {"group": STR, "kind": STR, "name": STR, "namespace": STR, "sectionName": STR, "port": INT},
                    ["name"],
                ),
            },
            "hostnames": {"type": "array", "maxItems": 16, "items": STR},
            "rules": {
                "type": "array",
                "maxItems": 16,
                "items": closed(
                    {
                        "name": STR,
                        "matches": {
                            "type": "array",
                            "maxItems": 64,
                            "items": closed(
                                {
                                    "path": closed(
                                        {"type": {"enum": ["Exact", "PathPrefix", "RegularExpression"]}, "value": STR}
                                    ),
                                    "headers": {
                                        "type": "array",
                                        "items": closed(
                                            {"type": {"enum": ["Exact", "RegularExpression"]}, "name": STR, "value": STR},
                                            ["name", "value"],
                                        ),
                                    },
                                    "queryParams": {"type": "array"},
                                    "method": STR,
                                }
                            ),
                        },
                        "filters": {"type": "array"},
                        "backendRefs": {"type": "array", "maxItems": 16, "items": BACKEND_REF},
                        "timeouts": {"type": "object"},
                    }
                ),
            },
        }
    ),
)

CUSTOM = {
    ("argoproj.io/v1alpha1", "AnalysisTemplate"): ANALYSIS_TEMPLATE,
    ("argoproj.io/v1alpha1", "Rollout"): ROLLOUT,
    ("flagger.app/v1beta1", "Canary"): CANARY,
    ("gateway.networking.k8s.io/v1", "HTTPRoute"): HTTP_ROUTE,
}


def problems(path):
    with open(path) as f:
        docs = [d for d in yaml.safe_load_all(f) if d is not None]
    if not docs:
        yield f"{path}: no documents"
    for i, doc in enumerate(docs):
        where = f"{path}: document {i + 1} ({doc.get('kind', '?')}/{doc.get('metadata', {}).get('name', '?')})"
        key = (doc.get("apiVersion"), doc.get("kind"))
        if key in CUSTOM:
            validator = jsonschema.Draft202012Validator(CUSTOM[key])
            for e in sorted(validator.iter_errors(doc), key=lambda e: list(e.absolute_path)):
                at = ".".join(str(p) for p in e.absolute_path) or "(root)"
                yield f"{where}: {at}: {e.message}"
            continue
        if "." in (doc.get("apiVersion") or "").split("/")[0] and not doc["apiVersion"].startswith(
            ("apps/", "batch/", "policy/", "networking.k8s.io/", "autoscaling/")
        ):
            yield f"{where}: no schema for {key[0]} {key[1]}"
            continue
        try:
            kubernetes_validate.validate(doc, kubernetes_validate.latest_version(), strict=True)
        except kubernetes_validate.ValidationError as e:
            at = ".".join(str(p) for p in e.path) or "(root)"
            yield f"{where}: {at}: {e.message}"
        except kubernetes_validate.SchemaNotFoundError as e:
            yield f"{where}: {e.message}"


def main(paths):
    if not paths:
        print(__doc__.strip().splitlines()[-2], file=sys.stderr)
        return 2
    found = [p for path in paths for p in problems(path)]
    for p in found:
        print(p)
    checked = len(paths)
    print(f"{checked} files, {len(found)} problems", file=sys.stderr)
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
