// Validate a compose file against the Compose Specification JSON schema
// (the copy bundled in the dclint package). Prints one line per error and
// exits 1 if the file is invalid; prints "valid" and exits 0 otherwise.
import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import Ajv from "ajv";
import { parse } from "yaml";

const file = process.argv[2];
if (!file) {
  console.error("usage: node validate.mjs <compose file>");
  process.exit(2);
}
// The package does not export the file: read it from its install directory.
const schemaPath = fileURLToPath(new URL("./node_modules/dclint/schemas/compose.schema.json", import.meta.url));
const schema = JSON.parse(readFileSync(schemaPath, "utf8"));
// merge: true resolves `<<:` keys as Compose does.
const doc = parse(readFileSync(file, "utf8"), { merge: true });
// Compose's custom formats (duration, ...) are not JSON-schema formats: skip them.
const ajv = new Ajv({ allErrors: true, strict: false, validateFormats: false });
// The schema names draft-07 by an https URL Ajv does not know; it is draft-07.
delete schema.$schema;
const validate = ajv.compile(schema);
if (validate(doc)) {
  console.log(`valid: ${file} (${schema.title})`);
} else {
  for (const e of validate.errors) {
    console.log(`invalid: ${e.instancePath || "/"} ${e.message} ${JSON.stringify(e.params)}`);
  }
  process.exit(1);
}
