/**
 * A fake of the Daytona API subset Paddock's daytona provider uses, driven by the real
 * `@daytona/sdk` (see server.ts for the API references it follows and where it differs).
 */
export { startFakeDaytona } from "./server.ts";
export type { FakeDaytona, FakeDaytonaOptions, FakeDaytonaRequest } from "./server.ts";
