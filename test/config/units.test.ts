// Sizes and durations: accepted forms, exact values, and rejects with their messages.
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { parseDuration, parseMemory } from "../../src/config/index.ts";

const KiB = 1024;
const MiB = 1024 * KiB;
const GiB = 1024 * MiB;

void describe("parseMemory", () => {
  const accepted: [string, number][] = [
    ["8GB", 8_000_000_000],
    ["512MiB", 512 * MiB],
    ["1.5GiB", 1.5 * GiB],
    ["512M", 512 * MiB],
    ["512m", 512 * MiB],
    ["512Mi", 512 * MiB],
    ["2G", 2 * GiB],
    ["4gib", 4 * GiB],
    ["100KB", 100_000],
    ["100K", 100 * KiB],
    ["1TB", 1e12],
    ["1TiB", 1024 * GiB],
    ["16MiB", 16 * MiB],
    ["1024B", 1024],
    ["8 GB", 8e9],
    [" 1GiB ", GiB],
    ["0.5KiB", 512],
    ["1.0005KB", 1001], // rounded to a whole byte
  ];
  for (const [input, bytes] of accepted) {
    void it(`${JSON.stringify(input)} → ${bytes}`, () => assert.equal(parseMemory(input), bytes));
  }

  const rejected: [string, RegExp][] = [
    ["8 gigs", /^"8 gigs" has an unknown unit "gigs": write a number and a unit, e\.g\. "8GB"/],
    ["8", /^"8" has no unit: write a number and a unit/],
    ["", /^"" is not a size/],
    ["GB", /^"GB" is not a size/],
    ["-1GB", /^"-1GB" is not a size/],
    ["1e3GB", /^"1e3GB" is not a size/],
    ["1,5GB", /^"1,5GB" is not a size/],
    [".5GB", /^".5GB" is not a size/],
    ["8 G B", /^"8 G B" is not a size/],
    ["99999999999TB", /^"99999999999TB" is too large$/],
  ];
  for (const [input, message] of rejected) {
    void it(`rejects ${JSON.stringify(input)}`, () => assert.throws(() => parseMemory(input), { message }));
  }

  void it("lists both unit families in its message", () => {
    assert.throws(
      () => parseMemory("lots"),
      { message: '"lots" is not a size: write a number and a unit, e.g. "8GB", "512MiB", "1.5GiB" or "512M" (KB, MB, GB, TB are powers of 1000; KiB, MiB, GiB, TiB and K, M, G, T are powers of 1024)' },
    );
  });
});

void describe("parseDuration", () => {
  const s = 1000;
  const m = 60 * s;
  const h = 60 * m;
  const accepted: [string, number][] = [
    ["30m", 30 * m],
    ["1h30m", 90 * m],
    ["45s", 45 * s],
    ["2h", 2 * h],
    ["1d", 24 * h],
    ["7d", 7 * 24 * h],
    ["1h 30m", 90 * m],
    ["30 m", 30 * m],
    ["1.5h", 90 * m],
    ["1d2h3m4s", 24 * h + 2 * h + 3 * m + 4 * s],
    ["0s", 0], // parses; compute.timeout refuses it
    ["0.5s", 500],
  ];
  for (const [input, ms] of accepted) {
    void it(`${JSON.stringify(input)} → ${ms}`, () => assert.equal(parseDuration(input), ms));
  }

  const rejected: [string, RegExp][] = [
    ["30", /^"30" has no unit: write a number and a unit, largest unit first/],
    ["30 minutes", /^"30 minutes" is not a duration/],
    ["30M", /^"30M" is not a duration/], // upper case could be read as months
    ["30m1h", /^"30m1h" is not a duration/], // largest first
    ["1h1h", /^"1h1h" is not a duration/],
    ["500ms", /^"500ms" is not a duration/],
    ["", /^"" is not a duration/],
    ["-5m", /^"-5m" is not a duration/],
    ["h", /^"h" is not a duration/],
  ];
  for (const [input, message] of rejected) {
    void it(`rejects ${JSON.stringify(input)}`, () => assert.throws(() => parseDuration(input), { message }));
  }

  void it("names the accepted forms", () => {
    assert.throws(() => parseDuration("soon"), {
      message: '"soon" is not a duration: write a number and a unit, largest unit first, e.g. "45s", "30m", "2h", "1h30m" or "1d" (units: d, h, m, s)',
    });
  });
});
