import { discountFor } from "./discounts.js";

/** The total of a cart in cents, after its discount code (if any). */
export function cartTotal(items, code) {
  const subtotal = items.reduce((sum, item) => sum + item.price * item.qty, 0);
  const rate = discountFor(code);
  return Math.round(subtotal * (1 - rate));
}
