"""Structural-schema handling of custom resources, as kube-apiserver does it for CRDs.

Four steps, in the order kube-apiserver applies them to a custom resource on create/update:

* `prune`          drops fields the schema does not know (unless `x-kubernetes-preserve-unknown-fields`),
                   and unknown ObjectMeta fields of the root and of embedded resources; returns their
                   paths for `fieldValidation=Strict|Warn` (`unknown field "spec.foo"`).
* `apply_defaults` drops non-nullable `null`s that have no default, then fills `default`s of absent fields.
* `validate`       OpenAPI v3 value validation (through `jsonschema`, patterns through RE2), embedded-resource
                   TypeMeta checks and `x-kubernetes-list-type` set/map uniqueness, worded like
                   kube-apiserver (kube-openapi messages wrapped into apimachinery field errors).
* `validate_crd`   the basic checks kube-apiserver runs on a CustomResourceDefinition itself.

The schemas are plain dicts (a CRD version's `schema.openAPIV3Schema`). CEL rules
(`x-kubernetes-validations`) are ignored. The modules: `structural` (accessors and the one walk),
`pruning`, `defaulting`, `keywords` (the jsonschema validator with kube-openapi's semantics), `formats`,
`patterns` (RE2), `validation` (kube's wording; with `embedded` and `listtypes`), `fielderrors`, `names`,
`crd`.
"""

from .crd import validate_crd
from .defaulting import apply_defaults
from .pruning import prune
from .structural import Schema
from .validation import validate

__all__ = ["Schema", "prune", "apply_defaults", "validate", "validate_crd"]
