// TypeDoc plugin (typedoc.json "plugin"): every export of an entry point needs a summary
// and an @example. A missing one is a validation warning, and `npm run docs` treats
// warnings as errors. Exports named in the `pendingDocs` option are let through and listed
// (a known gap, to be closed in src/); one of them that has both is a warning too, so the
// list only shrinks.
import { Application, ParameterType } from "typedoc";

/** @param {import("typedoc").Application} app */
export function load(app) {
  app.options.addDeclaration({
    name: "pendingDocs",
    help: "Exports (by name) still allowed to lack a summary or an @example.",
    type: ParameterType.Array,
    defaultValue: [],
  });

  app.on(Application.EVENT_VALIDATE_PROJECT, (project) => {
    const pending = new Set(app.options.getValue("pendingDocs"));
    const stillPending = [];
    for (const entry of project.children ?? []) {
      for (const item of entry.children ?? []) {
        const comment = item.comment ?? item.signatures?.[0]?.comment;
        const missing = [];
        if (!comment?.summary.some((part) => part.text.trim() !== "")) missing.push("a summary");
        if (!comment?.getTag("@example")) missing.push("an @example");
        const where = item.getFriendlyFullName();
        if (pending.delete(item.name)) {
          if (missing.length === 0)
            app.logger.warn(`${where} has a summary and an example now: remove it from pendingDocs in typedoc.json`);
          else stillPending.push(`${item.name} (${missing.join(", ")})`);
        } else if (missing.length > 0) {
          app.logger.warn(`${where} is exported without ${missing.join(" or ")}`);
        }
      }
    }
    for (const name of pending) app.logger.warn(`pendingDocs names ${name}, which is not exported: remove it from typedoc.json`);
    if (stillPending.length > 0)
      app.logger.info(`${stillPending.length} exports still lack docs (pendingDocs): ${stillPending.join("; ")}`);
  });
}
