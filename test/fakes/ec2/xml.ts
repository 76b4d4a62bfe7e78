/** EC2 Query API XML for the fake: responses in EC2's namespace and EC2's error document. */

export const EC2_XMLNS = "http://ec2.amazonaws.com/doc/2016-11-15/";

export type XmlValue = string | number | boolean | null | undefined | XmlObject | XmlValue[];
export interface XmlObject {
  [name: string]: XmlValue;
}

export function escapeXml(s: string): string {
  return s.replace(/[<>&'"]/g, (c) => ({ "<": "&lt;", ">": "&gt;", "&": "&amp;", "'": "&apos;", '"': "&quot;" })[c] ?? c);
}

/** Lists become `<item>` children, as EC2 writes them (`<instancesSet><item>…</item></instancesSet>`). */
function body(v: XmlValue): string {
  if (v === null || v === undefined) return "";
  if (Array.isArray(v)) return v.map((x) => `<item>${body(x)}</item>`).join("");
  if (typeof v === "object") return Object.entries(v).map(([k, x]) => (x === undefined ? "" : `<${k}>${body(x)}</${k}>`)).join("");
  return escapeXml(String(v));
}

export function responseXml(action: string, requestId: string, fields: XmlObject): string {
  return `<?xml version="1.0" encoding="UTF-8"?>\n<${action}Response xmlns="${EC2_XMLNS}"><requestId>${requestId}</requestId>${body(fields)}</${action}Response>`;
}

/** https://docs.aws.amazon.com/AWSEC2/latest/APIReference/errors-overview.html#api-error-response */
export function errorXml(code: string, message: string, requestId: string): string {
  return `<?xml version="1.0" encoding="UTF-8"?>\n<Response><Errors><Error><Code>${escapeXml(code)}</Code><Message>${escapeXml(message)}</Message></Error></Errors><RequestID>${requestId}</RequestID></Response>`;
}
