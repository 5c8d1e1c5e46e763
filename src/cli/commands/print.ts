import { defineCommand, type ArgsDef } from "citty";
import { Device } from "../../block/device.ts";
import { VolumePrinter } from "../../offline/print.ts";
import { QuietExit, ScoutfsError } from "../../util/errors.ts";
import { parseStrict } from "../args.ts";
import { BufferedOut } from "../out.ts";

const args = {
  "skip-likely-huge": { type: "boolean", alias: "S", description: "Skip large structures to minimize output size" },
  "META-DEV": { type: "positional", required: false, description: "Metadata device or image file" },
} satisfies ArgsDef;

export const printCommand = defineCommand({
  meta: { name: "print", description: "Print metadata structures" },
  args,
  run({ rawArgs }) {
    const p = parseStrict(rawArgs, args);
    if (p.positionals.length > 1) throw new ScoutfsError("EINVAL", "more than one argument given");
    const path = p.positionals[0];
    if (!path) throw new ScoutfsError("EINVAL", "no metadata device argument given");
    const dev = Device.open(path);
    const out = new BufferedOut(1);
    try {
      const printer = new VolumePrinter(dev, (s) => out.write(s), { skipLikelyHuge: !!p.values["skip-likely-huge"] });
      try {
        printer.printVolume();
      } finally {
        out.flush();
      }
      if (printer.problems.length > 0) {
        // one line per damaged structure, then a failing exit
        for (const msg of printer.problems) process.stderr.write(`scoutfs print: ${msg}\n`);
        throw new QuietExit(1);
      }
    } finally {
      dev.close();
    }
  },
});
