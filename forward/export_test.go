package forward

// BillerTLSCheckInterval is billerTLSCheckInterval, for the tests of
// package forward_test.
const BillerTLSCheckInterval = billerTLSCheckInterval
