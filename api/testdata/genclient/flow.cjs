// flow.cjs runs the partner API's payment flow through a client made at
// run time from the API's own OpenAPI document (openapi-client-axios:
// one method per operationId, header and path parameters by name), so
// the document, not hand-written requests, says how each call is made.
//
//   node flow.cjs openapi.json
//
// SWITCHD_API_URL and SWITCHD_API_TOKEN name the API and the bearer
// token; SWITCHD_FLOW_RUN (default "1") goes into every key and
// reference, so the flow can run again against the same ledger. The
// modules come from NODE_PATH (.ci/run installs them, pinned, outside the
// tree). It prints one JSON line of what it made and exits non-zero on
// the first answer that is not the one expected.
'use strict';
const assert = require('node:assert/strict');
const fs = require('node:fs');
const OpenAPIClientAxios = require('openapi-client-axios').default;

const problems = 'https://switchd.dev/problems/';

async function main() {
  const [doc] = process.argv.slice(2);
  const url = process.env.SWITCHD_API_URL, tok = process.env.SWITCHD_API_TOKEN;
  const run = process.env.SWITCHD_FLOW_RUN || '1';
  assert.ok(doc && url && tok, 'usage: SWITCHD_API_URL=… SWITCHD_API_TOKEN=… node flow.cjs openapi.json');
  const api = new OpenAPIClientAxios({
    definition: JSON.parse(fs.readFileSync(doc, 'utf8')),
    // Every answer comes back, refusals too: the flow asserts the status.
    axiosConfigDefaults: { baseURL: url, headers: { Authorization: `Bearer ${tok}` }, validateStatus: () => true },
  });
  const client = await api.init();
  for (const op of ['create-payment', 'get-payment', 'refund-payment', 'pay-bill', 'check-funds']) {
    assert.equal(typeof client[op], 'function', `no operation ${op} in the document`);
  }
  const expect = (res, status, what) =>
    assert.equal(res.status, status, `${what}: ${res.status} ${JSON.stringify(res.data)}`);

  const body = { amount: '12.34', currency: 'USD', debtor_account: 'card-4111', reference: `GEN-${run}` };
  const first = await client['create-payment']({ 'Idempotency-Key': `gen-${run}` }, body);
  expect(first, 201, 'payment');
  const p = first.data;
  assert.equal(p.amount, '12.34');
  assert.equal(p.refunded, '0.00');
  assert.equal(p.status, 'completed');
  assert.equal(p.creditor_account, 'demo-acquirer-settlement');
  assert.equal(first.headers['idempotent-replayed'], undefined);

  const again = await client['create-payment']({ 'Idempotency-Key': `gen-${run}` }, body);
  expect(again, 201, 'replay');
  assert.equal(again.headers['idempotent-replayed'], 'true');
  assert.deepEqual(again.data, p);

  const other = await client['create-payment']({ 'Idempotency-Key': `gen-${run}` }, { ...body, amount: '12.35' });
  expect(other, 409, 'the key with another body');
  assert.equal(other.headers['content-type'], 'application/problem+json');
  assert.equal(other.data.type, problems + 'idempotency-conflict');

  const refund = await client['refund-payment']({ id: p.id, 'Idempotency-Key': `gen-${run}-r1` }, { amount: '2.00' });
  expect(refund, 201, 'refund');
  assert.equal(refund.data.payment_id, p.id);
  assert.equal(refund.data.amount, '2.00');

  const over = await client['refund-payment']({ id: p.id, 'Idempotency-Key': `gen-${run}-r2` }, { amount: '10.35' });
  expect(over, 422, 'refund over what is left');
  assert.equal(over.data.type, problems + 'exceeds-original');

  const read = await client['get-payment']({ id: p.id });
  expect(read, 200, 'read');
  assert.equal(read.data.status, 'partly_refunded');
  assert.equal(read.data.refunded, '2.00');
  assert.equal(read.data.amount, '12.34');

  const bill = await client['pay-bill']({ 'Idempotency-Key': `gen-${run}-b` },
    { bill_type: 'ELEC', biller_reference: `GEN-E-${run}`, amount: '25.00', currency: 'USD', debtor_account: 'card-4111' });
  expect(bill, 201, 'bill payment');
  assert.equal(bill.data.creditor_account, 'biller-power-co');

  const funds = {};
  for (const amount of ['5.00', '5000.00']) {
    const f = await client['check-funds']({ id: 'card-4111' }, { amount, currency: 'USD' });
    expect(f, 200, `check-funds ${amount}`);
    funds[amount] = f.data.result;
  }
  assert.deepEqual(funds, { '5.00': 'FUNDS_AVAILABLE', '5000.00': 'FUNDS_NOT_AVAILABLE' });

  const bad = await client['check-funds']({ id: 'card-4111' }, { amount: '1.00', currency: 'EUR' });
  expect(bad, 422, 'check-funds in another currency');
  assert.equal(bad.data.type, problems + 'currency-mismatch');

  console.log(JSON.stringify({ payment: p.id, refund: refund.data.id, bill: bill.data.id, funds }));
}

main().catch((err) => {
  console.error(err && err.stack || err);
  process.exit(1);
});
