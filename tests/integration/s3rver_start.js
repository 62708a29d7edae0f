'use strict';
/*
 * Start s3rver 3.7.1 for the remote tests, with three additions, because
 * s3rver is older than (or looser than) the S3 the backend must work with:
 *
 *  1. Conditional writes.  A PUT with "If-None-Match: *" answers 412
 *     PreconditionFailed when the key exists (S3 since 2024, MinIO, Ceph
 *     RGW); s3rver ignores the header.  Such PUTs are serialised per key so
 *     that of two concurrent ones exactly one succeeds.
 *  2. SigV4 verification.  s3rver accepts any V4 signature made with a
 *     known access key id; a wrong secret, a non-canonical path or query,
 *     or a missing x-amz-content-sha256 must fail here as on S3.  The
 *     payload hash itself is taken from that header, not checked against
 *     the body (the backend sends UNSIGNED-PAYLOAD).
 *  3. Fault injection for the retry tests: PUT /__fault with a JSON body
 *     {"fail": N, "status": 503, "code": "SlowDown"} answers the next N
 *     requests with that error before doing anything; {"store_then_fail": N}
 *     makes the next N object PUTs store the object and then answer 500.
 *
 * Usage: node s3rver_start.js MODULE_DIR DIRECTORY PORT BUCKET
 * (PORT 0 picks a free one).  Prints "listening PORT" once ready, and exits
 * when its stdin closes, so that it never outlives the test run.
 */
const crypto = require('crypto');
const path = require('path');

const [moduleDir, directory, portArg, bucket] = process.argv.slice(2);
const s3rverDir = path.join(moduleDir, 'node_modules', 's3rver');
const S3rver = require(s3rverDir);
const S3Error = require(path.join(s3rverDir, 'lib', 'models', 'error'));
const AWSAccount = require(path.join(s3rverDir, 'lib', 'models', 'account'));
const objectCtrl = require(path.join(s3rverDir, 'lib', 'controllers', 'object'));

const faults = { fail: 0, status: 503, code: 'SlowDown', store_then_fail: 0 };

/* RFC 3986 encoding as SigV4 wants it: everything but A-Za-z0-9-._~ */
function enc(s) {
  return encodeURIComponent(s).replace(/[!'()*]/g,
    c => '%' + c.charCodeAt(0).toString(16).toUpperCase());
}

function hmac(key, data) {
  return crypto.createHmac('sha256', key).update(data).digest();
}

function sigFail(msg) {
  return new S3Error('SignatureDoesNotMatch',
    'The request signature we calculated does not match the signature you ' +
    'provided. Check your key and signing method. (' + msg + ')');
}

function verifySigV4(req) {
  const auth = req.headers['authorization'];
  if (!auth || !auth.startsWith('AWS4-HMAC-SHA256 ')) return;
  const f = {};
  for (const part of auth.slice(17).split(',')) {
    const i = part.indexOf('=');
    f[part.slice(0, i).trim()] = part.slice(i + 1).trim();
  }
  const [keyId, date, region, service, term] = (f.Credential || '').split('/');
  const account = AWSAccount.registry.get(keyId);
  if (!account) {
    throw new S3Error('InvalidAccessKeyId',
      'The AWS Access Key Id you provided does not exist in our records.');
  }
  if (service !== 's3' || term !== 'aws4_request' || region !== 'us-east-1')
    throw sigFail('bad credential scope');
  const payloadHash = req.headers['x-amz-content-sha256'];
  if (!payloadHash) {
    throw new S3Error('InvalidRequest',
      'Missing required header for this request: x-amz-content-sha256');
  }
  const signed = (f.SignedHeaders || '').split(';');
  if (!signed.includes('host') || !signed.includes('x-amz-date'))
    throw sigFail('host and x-amz-date must be signed');
  const headers = signed.map(h => {
    const v = req.headers[h];
    if (v === undefined) throw sigFail(`signed header '${h}' not sent`);
    return `${h}:${String(v).trim().replace(/ +/g, ' ')}\n`;
  }).join('');
  const [rawPath, rawQuery = ''] = req.url.split(/\?(.*)/s);
  const uri = rawPath.split('/').map(s => enc(decodeURIComponent(s))).join('/');
  const query = rawQuery.split('&').filter(Boolean).map(kv => {
    const i = kv.indexOf('=');
    const k = i < 0 ? kv : kv.slice(0, i), v = i < 0 ? '' : kv.slice(i + 1);
    return [enc(decodeURIComponent(k)), enc(decodeURIComponent(v))];
  }).sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : a[1] < b[1] ? -1 : 1))
    .map(([k, v]) => `${k}=${v}`).join('&');
  const canonical = [req.method, uri, query, headers, signed.join(';'), payloadHash]
    .join('\n');
  const amzDate = req.headers['x-amz-date'] || '';
  const toSign = ['AWS4-HMAC-SHA256', amzDate, `${date}/${region}/${service}/${term}`,
    crypto.createHash('sha256').update(canonical).digest('hex')].join('\n');
  const secret = account.accessKeys.get(keyId);
  let k = hmac('AWS4' + secret, date);
  k = hmac(hmac(hmac(k, region), service), term);
  if (hmac(k, toSign).toString('hex') !== f.Signature) throw sigFail('signature');
}

/* Per-key chains of conditional PUTs. */
const chains = new Map();

async function serialised(id, fn) {
  const prev = chains.get(id) || Promise.resolve();
  const run = prev.then(fn);
  const done = run.catch(() => {});	/* the next one runs whatever this one did */
  chains.set(id, done);
  try {
    return await run;
  } finally {
    if (chains.get(id) === done) chains.delete(id);
  }
}

const putObject = objectCtrl.putObject;
objectCtrl.putObject = async function conditionalPutObject(ctx) {
  const store = async () => {
    await putObject(ctx);
    if (faults.store_then_fail > 0) {
      faults.store_then_fail--;
      throw new S3Error('InternalError', 'injected failure after storing');
    }
  };
  if (ctx.get('if-none-match') !== '*') return store();
  const { bucket: b, key } = ctx.params;
  return serialised(`${b}/${key}`, async () => {
    if (await ctx.store.existsObject(b, key)) {
      throw new S3Error('PreconditionFailed',
        'At least one of the pre-conditions you specified did not hold',
        { Condition: 'If-None-Match' });
    }
    return store();
  });
};

const server = new S3rver({
  address: '127.0.0.1',
  port: Number(portArg),
  directory,
  silent: true,
  configureBuckets: [{ name: bucket }],
});

/* In front of s3rver's own middleware (Koa composes them at listen time). */
server.middleware.unshift(async (ctx, next) => {
  if (ctx.path === '/__fault' && ctx.method === 'PUT') {
    let body = '';
    for await (const chunk of ctx.req) body += chunk;
    Object.assign(faults, JSON.parse(body));
    ctx.status = 204;
    return;
  }
  if (faults.fail > 0) {
    faults.fail--;
    const err = new S3Error(faults.code, 'injected failure');
    err.status = faults.status;
    throw err;
  }
  verifySigV4(ctx.req);
  return next();
});

server.run().then(addr => {
  process.stdout.write(`listening ${addr.port}\n`);
  process.stdin.on('end', () => process.exit(0)).resume();
}, err => {
  process.stderr.write(`s3rver: ${err.stack || err}\n`);
  process.exit(1);
});
