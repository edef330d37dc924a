-- The payment provider's processing fees get an account of their own.
ALTER TABLE ledger_entries DROP CONSTRAINT ledger_entries_account_check;
ALTER TABLE ledger_entries ADD CONSTRAINT ledger_entries_account_check
    CHECK (account IN ('stripe_balance', 'course_revenue', 'coupon_discounts', 'refunds', 'payment_fees'));
