import { defineCommand, type ArgsDef } from "citty";
import { mkfs, parseQuorumSlot } from "../../offline/mkfs.ts";
import { parseHuman, parseU64 } from "../../util/size.ts";
import { ScoutfsError } from "../../util/errors.ts";
import { FORMAT_VERSION_MAX, FORMAT_VERSION_MIN } from "../../format/constants.ts";
import { parseStrict, str } from "../args.ts";

const args = {
  "quorum-slot": { type: "string", alias: "Q", valueHint: "NR,ADDR,PORT", description: "Specify quorum slot addresses [Required, repeatable]" },
  force: { type: "boolean", alias: "f", description: "Overwrite existing data on block devices" },
  "allow-small-size": { type: "boolean", alias: "A", description: "Allow specified meta/data devices less than minimum, still warns" },
  "max-meta-size": { type: "string", alias: "m", valueHint: "SIZE", description: "Use a size less than the base metadata device size (bytes or KMGTP units)" },
  "max-data-size": { type: "string", alias: "d", valueHint: "SIZE", description: "Use a size less than the base data device size (bytes or KMGTP units)" },
  "data-alloc-zone-blocks": { type: "string", alias: "z", valueHint: "BLOCKS", description: "Divide data device into block zones so each mounts writes to a zone (4KB blocks)" },
  "format-version": { type: "string", alias: "V", valueHint: "version", description: `Specify a format version within supported range, (${FORMAT_VERSION_MIN}-${FORMAT_VERSION_MAX}, default ${FORMAT_VERSION_MAX})` },
  "META-DEVICE": { type: "positional", required: false, description: "Metadata device or image file" },
  "DATA-DEVICE": { type: "positional", required: false, description: "Data device or image file" },
} satisfies ArgsDef;

export const mkfsCommand = defineCommand({
  meta: { name: "mkfs", description: "Initialize a new ScoutFS filesystem" },
  args,
  run({ rawArgs }) {
    const p = parseStrict(rawArgs, args, ["quorum-slot"]);
    const v = p.values;
    if (p.positionals.length > 2) throw new ScoutfsError("EINVAL", "more than two arguments given");
    const [metaPath, dataPath] = p.positionals;
    const slotArgs = (v["quorum-slot"] as string[] | undefined) ?? [];
    if (slotArgs.length === 0) throw new ScoutfsError("EINVAL", "must specify at least one quorum slot with --quorum-slot|-Q");
    if (!metaPath) throw new ScoutfsError("EINVAL", "no metadata device argument given");
    if (!dataPath) throw new ScoutfsError("EINVAL", "no data device argument given");
    const fv = str(v["format-version"]);
    const z = str(v["data-alloc-zone-blocks"]);
    const mm = str(v["max-meta-size"]);
    const md = str(v["max-data-size"]);
    mkfs(
      {
        metaPath,
        dataPath,
        slots: slotArgs.map(parseQuorumSlot),
        force: !!v.force,
        allowSmallSize: !!v["allow-small-size"],
        ...(mm !== undefined ? { maxMetaSize: parseHuman(mm) } : {}),
        ...(md !== undefined ? { maxDataSize: parseHuman(md) } : {}),
        ...(z !== undefined ? { dataAllocZoneBlocks: parseU64(z, "data-alloc-zone-blocks") } : {}),
        ...(fv !== undefined ? { fmtVers: Number(parseU64(fv, "format-version")) } : {}),
      },
      { out: (l) => process.stdout.write(l + "\n"), warn: (l) => process.stderr.write(l + "\n") },
    );
  },
});
