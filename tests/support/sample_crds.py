"""CRDs the tests serve, validate and document: one small and general (Widget), one shaped like k3c's
LocalContainer. Data only, so unit and e2e tests share it without importing a harness or each other."""

WIDGET_CRD = """
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: widgets.test.k3c.io
spec:
  group: test.k3c.io
  scope: Namespaced
  names: {plural: widgets, singular: widget, kind: Widget, shortNames: [wd], categories: [all]}
  versions:
  - name: v1
    served: true
    storage: true
    subresources: {status: {}}
    additionalPrinterColumns:
    - {name: Size, type: integer, jsonPath: .spec.size}
    - {name: Color, type: string, jsonPath: .spec.color, description: The colour}
    - {name: Ready, type: string, jsonPath: '.status.conditions[?(@.type=="Ready")].status'}
    - {name: Shape, type: string, jsonPath: .spec.shape, priority: 1}
    - {name: Age, type: date, jsonPath: .metadata.creationTimestamp}
    schema:
      openAPIV3Schema:
        type: object
        description: A widget for tests.
        properties:
          spec:
            type: object
            description: What the widget should be.
            required: [size]
            properties:
              size: {type: integer, minimum: 0, maximum: 100, description: How big}
              color: {type: string, enum: [red, green, blue], default: red}
              shape: {type: string}
              extra: {type: object, x-kubernetes-preserve-unknown-fields: true}
          status:
            type: object
            x-kubernetes-preserve-unknown-fields: true
            properties:
              phase: {type: string}
              conditions:
                type: array
                items:
                  type: object
                  properties:
                    type: {type: string}
                    status: {type: string}
                    reason: {type: string}
                    message: {type: string}
                    lastTransitionTime: {type: string, format: date-time}
"""


# A realistic CRD, shaped like k3c's LocalContainer.
LOCALCONTAINER_CRD = {
    "apiVersion": "apiextensions.k8s.io/v1",
    "kind": "CustomResourceDefinition",
    "metadata": {"name": "localcontainers.k3c.io"},
    "spec": {
        "group": "k3c.io",
        "scope": "Namespaced",
        "names": {"plural": "localcontainers", "singular": "localcontainer", "kind": "LocalContainer",
                  "shortNames": ["lc"]},
        "versions": [{
            "name": "v1alpha1", "served": True, "storage": True,
            "subresources": {"status": {}},
            "additionalPrinterColumns": [
                {"name": "Image", "type": "string", "jsonPath": ".spec.image"},
                {"name": "Phase", "type": "string", "jsonPath": ".status.phase"},
            ],
            "schema": {"openAPIV3Schema": {
                "type": "object",
                "description": "LocalContainer is a container run by the local engine.",
                "properties": {
                    "spec": {
                        "type": "object",
                        "description": "Desired state of the container.",
                        "required": ["image"],
                        "properties": {
                            "image": {"type": "string", "minLength": 1, "description": "Image reference."},
                            "name": {"type": "string", "maxLength": 12, "pattern": "^[a-z][a-z0-9-]*$"},
                            "command": {"type": "array", "items": {"type": "string"}},
                            "replicas": {"type": "integer", "minimum": 0, "maximum": 5, "default": 1},
                            "cpus": {"type": "number", "exclusiveMinimum": True, "minimum": 0, "maximum": 2.5},
                            "restartPolicy": {"type": "string", "enum": ["Always", "OnFailure", "Never"],
                                              "default": "Never"},
                            "memory": {"x-kubernetes-int-or-string": True,
                                       "anyOf": [{"type": "integer"}, {"type": "string"}]},
                            "createdAfter": {"type": "string", "format": "date-time"},
                            "ports": {
                                "type": "array", "maxItems": 3,
                                "x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["containerPort"],
                                "items": {
                                    "type": "object", "required": ["containerPort"],
                                    "properties": {
                                        "containerPort": {"type": "integer", "format": "int32", "minimum": 1,
                                                          "maximum": 65535},
                                        "hostPort": {"type": "integer", "format": "int32", "maximum": 65535},
                                        "protocol": {"type": "string", "enum": ["TCP", "UDP"], "default": "TCP"},
                                    },
                                },
                            },
                            "env": {"type": "object", "additionalProperties": {"type": "string", "maxLength": 8}},
                            "volumes": {
                                "type": "object",
                                "additionalProperties": {
                                    "type": "object",
                                    "properties": {"path": {"type": "string"},
                                                   "readOnly": {"type": "boolean", "default": False}},
                                },
                            },
                            "capabilities": {"type": "array", "items": {"type": "string"},
                                             "x-kubernetes-list-type": "set"},
                            "healthcheck": {"type": "object", "nullable": True,
                                            "properties": {"interval": {"type": "string", "default": "30s"}},
                                            "default": {}},
                            "labels": {"type": "object", "nullable": True,
                                       "additionalProperties": {"type": "string"}},
                            "annotationsTemplate": {"type": "object", "x-kubernetes-preserve-unknown-fields": True,
                                                    "properties": {"owner": {"type": "object", "properties": {
                                                        "name": {"type": "string"}}}}},
                            "sidecar": {"type": "object", "x-kubernetes-embedded-resource": True,
                                        "x-kubernetes-preserve-unknown-fields": True},
                            "network": {"type": "object", "oneOf": [{"required": ["mode"]}, {"required": ["ref"]}],
                                        "properties": {"mode": {"type": "string"}, "ref": {"type": "string"}}},
                            "user": {"type": "string", "not": {"enum": ["root"]},
                                     "x-kubernetes-validations": [{"rule": "self != 'admin'"}]},
                        },
                        "x-kubernetes-validations": [{"rule": "self.replicas >= 0", "message": "no"}],
                    },
                    "status": {"type": "object", "properties": {
                        "phase": {"type": "string"}, "containerID": {"type": "string"},
                        "conditions": {"type": "array", "items": {"type": "object", "required": ["type"],
                                                                  "properties": {"type": {"type": "string"},
                                                                                 "status": {"type": "string"}}}}}},
                },
            }},
        }],
    },
}
