import { test } from "node:test";
import assert from "node:assert/strict";
import { cartTotal } from "../src/cart.js";

test("no code: the subtotal", () => {
  assert.equal(cartTotal([{ price: 1250, qty: 2 }], undefined), 2500);
});

test("a known code, in any case", () => {
  assert.equal(cartTotal([{ price: 1000, qty: 1 }], "welcome10"), 900);
  assert.equal(cartTotal([{ price: 1000, qty: 4 }], "VIP25"), 3000);
});
