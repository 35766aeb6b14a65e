// Custom resources (ServiceMonitor, PrometheusRule, ScaledObject, HTTPRoute) validated against their CRDs'
// OpenAPI schemas, as the API server validates them with strict field validation (kubectl's default):
// types, enums, required fields, formats, and no field the CRD does not declare. The schemas come from
// the npm registry's @kubernetes-models packages (generated from the CRDs; scripts/bootstrap.sh installs
// them into .tools/crds); those packages accept unknown fields, so every object schema that lists its
// properties and does not keep unknown fields (x-kubernetes-preserve-unknown-fields) is closed here.
//
// Usage: node validate.cjs objects.json   (a JSON list of objects) -> one JSON line per object:
// {"kind": ..., "name": ..., "errors": [...]}
"use strict";
const fs = require("node:fs");
const path = require("node:path");

const modules = path.resolve(__dirname, "../../.tools/crds/node_modules");
const validate = require(path.join(modules, "@kubernetes-models/validate"));

function closed(schema) {
  if (Array.isArray(schema)) return schema.map(closed);
  if (schema === null || typeof schema !== "object") return schema;
  const copy = {};
  for (const [key, value] of Object.entries(schema)) {
    copy[key] = key === "properties" ? Object.fromEntries(Object.entries(value).map(([k, v]) => [k, closed(v)])) : closed(value);
  }
  if (copy.properties && !("additionalProperties" in copy) && !copy["x-kubernetes-preserve-unknown-fields"]) {
    copy.additionalProperties = false;
  }
  return copy;
}

const register = validate.register;
validate.register = (id, schema) => register(id, closed(schema));

const PACKAGES = {
  "monitoring.coreos.com": "@kubernetes-models/prometheus-operator",
  "keda.sh": "@kubernetes-models/keda",
  "gateway.networking.k8s.io": "@kubernetes-models/gateway-api",
};

for (const obj of JSON.parse(fs.readFileSync(process.argv[2], "utf8"))) {
  const [group, version] = obj.apiVersion.split("/");
  const found = { kind: obj.kind, name: obj.metadata && obj.metadata.name, errors: [] };
  const pkg = PACKAGES[group];
  if (!pkg) {
    found.errors.push(`no CRD schema known for ${obj.apiVersion}`);
  } else {
    const Model = require(path.join(modules, pkg, group, version, obj.kind))[obj.kind];
    try {
      new Model(obj).validate();
    } catch (err) {
      found.errors = (err.errors || [{ message: err.message }]).map(
        (e) => `${e.instancePath || "/"} ${e.message}${e.params && e.params.additionalProperty ? `: ${e.params.additionalProperty}` : ""}`,
      );
    }
  }
  console.log(JSON.stringify(found));
}
