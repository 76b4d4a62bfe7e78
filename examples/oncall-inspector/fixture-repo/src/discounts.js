/** Discount codes marketing has published, by code. */
export const DISCOUNTS = {
  WELCOME10: { rate: 0.1 },
  VIP25: { rate: 0.25 },
};

/** The discount a code gives, as a fraction of the total. */
export function discountFor(code) {
  if (!code) return 0;
  const discount = DISCOUNTS[code.toUpperCase()];
  return discount.rate;
}
