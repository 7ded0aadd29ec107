// Drives the official Firestore clients against a Firestore REST endpoint
// (firegate's emulator, or firegate in front of it) and checks every answer.
//
//   node run.mjs --host 127.0.0.1 --port 8081 --project demo --prefix run1 \
//                [--token JWT] [--clients admin,admin7,lite] [--deny set,lite:query]
//
// --clients admin: @google-cloud/firestore 8.x (the newest major on Node 20),
//           admin7: its 7.x line, lite: firebase/firestore/lite 12.x,
//           grpc: 8.x in its default gRPC mode (needs an HTTP/2 endpoint;
//           adds the realtime `listen` step)
// --token   bearer token to send (default: none for lite, "owner" for admin)
// --ssl     true: the admin client speaks HTTPS (trust the CA through
//           NODE_EXTRA_CA_CERTS); lite always uses plain HTTP (emulator mode)
// --deny    steps expected to be refused with PERMISSION_DENIED, as `step`
//           (both clients) or `client:step`
// Prints one JSON line per step; exits 1 if any expectation failed.
// Steps run in order and later ones read what earlier ones wrote.

import * as admin8 from '@google-cloud/firestore';
import * as admin7 from '@google-cloud/firestore-7';
import { OAuth2Client } from 'google-auth-library';
import { initializeApp, deleteApp } from 'firebase/app';
import * as lite from 'firebase/firestore/lite';

const COMMON = ['set', 'get', 'update', 'delete', 'query', 'collectionGroup', 'count', 'batch', 'transaction', 'listCollections', 'vector'];
// firebase/firestore/lite has no vector search, explain or partitions.
const STEPS = {
  admin: [...COMMON, 'findNearest', 'explain', 'partitions', 'burst', 'cleanup'],
  admin7: [...COMMON, 'findNearest', 'explain', 'partitions', 'burst', 'cleanup'],
  lite: [...COMMON, 'cleanup'],
  grpc: [...COMMON, 'findNearest', 'explain', 'partitions', 'burst', 'listen', 'cleanup'],
};
const ADMIN = { admin: admin8, admin7, grpc: admin8 };

function parseArgs(argv) {
  const args = { host: '127.0.0.1', project: 'demo-firegate', prefix: `run${Date.now()}`, clients: 'admin,admin7,lite', deny: '', ssl: 'false' };
  for (let i = 0; i < argv.length; i += 2) {
    const key = argv[i].replace(/^--/, '');
    if (!(key in args) && !['port', 'token'].includes(key)) throw new Error(`unknown argument ${argv[i]}`);
    args[key] = argv[i + 1];
  }
  if (!args.port) throw new Error('--port is required');
  args.port = Number(args.port);
  args.ssl = args.ssl === 'true';
  args.clients = args.clients.split(',').filter(Boolean);
  args.deny = new Set(args.deny.split(',').filter(Boolean));
  return args;
}

class Expectation extends Error {}

function expect(condition, message) {
  if (!condition) throw new Expectation(message);
}

function same(actual, wanted, what) {
  const a = JSON.stringify(actual);
  const w = JSON.stringify(wanted);
  expect(a === w, `${what}: got ${a}, want ${w}`);
}

// The status an error carries, as a canonical status name.
//  - admin (8.x) over REST puts the raw HTTP status in `code` (409, 400…)
//    and the raw response body in `message`: the body names the status.
//  - admin7 (7.x) derives a gRPC code from the HTTP status alone.
//  - lite gives string codes (`permission-denied`).
function statusOf(client, error) {
  if (client === 'admin') {
    try {
      return JSON.parse(error?.message).error.status;
    } catch {
      return `HTTP ${error?.code ?? error}`;
    }
  }
  if (client === 'admin7' || client === 'grpc') {
    const names = { 3: 'INVALID_ARGUMENT', 5: 'NOT_FOUND', 6: 'ALREADY_EXISTS', 7: 'PERMISSION_DENIED', 9: 'FAILED_PRECONDITION', 10: 'ABORTED', 16: 'UNAUTHENTICATED' };
    return names[error?.code] ?? String(error?.code ?? error);
  }
  return String(error?.code ?? error).toUpperCase().replaceAll('-', '_');
}

async function expectRefusal(client, promise, status, what) {
  const wanted = [status].flat();
  try {
    await promise;
  } catch (error) {
    expect(wanted.includes(statusOf(client, error)), `${what}: want ${wanted}, got ${statusOf(client, error)} (${error?.message})`);
    return;
  }
  throw new Expectation(`${what}: want ${wanted}, but it succeeded`);
}

// A listener's snapshots, awaited one predicate at a time; its error
// (a refused target) rejects the wait.
function watch(subscribe) {
  const snapshots = [];
  let wake = () => {};
  let failure = null;
  const stop = subscribe(
    (snapshot) => { snapshots.push(snapshot); wake(); },
    (error) => { failure = error; wake(); },
  );
  return {
    stop,
    async until(predicate, what, ms = 20_000) {
      const deadline = Date.now() + ms;
      for (;;) {
        while (snapshots.length > 0) {
          if (predicate(snapshots.shift())) return;
        }
        if (failure) throw failure;
        const left = deadline - Date.now();
        if (left <= 0) throw new Expectation(`${what}: no such snapshot within ${ms} ms`);
        await new Promise((resolve) => { wake = resolve; setTimeout(resolve, left); });
      }
    },
  };
}

function adminSteps(client, args, token) {
  const { Firestore: AdminFirestore, FieldValue: AdminFieldValue, VectorValue } = ADMIN[client];
  const authClient = new OAuth2Client();
  authClient.setCredentials({ access_token: token ?? 'owner', expiry_date: Date.now() + 3600_000 });
  const db = new AdminFirestore({
    projectId: args.project, host: args.host, port: args.port, ssl: args.ssl, preferRest: client !== 'grpc', authClient,
    // With ssl: false the client is in emulator mode and sends `Bearer owner`
    // unless told otherwise: a real token must be given as a header too.
    ...(token ? { customHeaders: { Authorization: `Bearer ${token}` } } : {}),
  });
  const col = db.collection(`${args.prefix}_${client}`);
  const sub = `${args.prefix}_${client}_sub`;
  const alpha = col.doc('alpha');
  // Below alpha, so recursiveDelete in cleanup takes them too.
  const vecs = alpha.collection(`${args.prefix}_${client}_vec`);
  const burst = alpha.collection(`${args.prefix}_${client}_burst`);
  const parts = `${args.prefix}_${client}_parts`;
  return {
    close: () => db.terminate(),
    // 1,000 writes at once, as the client's own system tests send them: all
    // in flight together for one caller (firegate's per-principal cap).
    burst: async () => {
      await Promise.all(Array.from({ length: 1000 }, (_, i) => burst.doc(`d${i}`).set({ i })));
      same((await burst.count().get()).data().count, 1000, 'documents written at once');
    },
    set: async () => {
      await alpha.set({ name: 'alpha', n: 1, tags: ['x'], nested: { a: true }, at: new Date('2024-01-02T03:04:05Z') });
      await col.doc('beta').set({ name: 'beta', n: 2 });
      await col.doc('gamma').set({ name: 'gamma', n: 3 });
    },
    get: async () => {
      const snap = await alpha.get();
      expect(snap.exists, 'alpha exists');
      const data = snap.data();
      same([data.name, data.n, data.tags, data.nested], ['alpha', 1, ['x'], { a: true }], 'alpha');
      same(data.at.toDate().toISOString(), '2024-01-02T03:04:05.000Z', 'alpha.at');
      expect(!(await col.doc('nope').get()).exists, 'a missing document does not exist');
    },
    update: async () => {
      const before = await alpha.get();
      await alpha.update({ n: 10 }, { lastUpdateTime: before.updateTime });
      // 7.x derives the code from the HTTP status alone, and FAILED_PRECONDITION
      // travels as 400: it reports INVALID_ARGUMENT. 8.x hands over the body.
      const stale = client === 'admin7' ? 'INVALID_ARGUMENT' : 'FAILED_PRECONDITION';
      await expectRefusal(client, alpha.update({ n: 99 }, { lastUpdateTime: before.updateTime }), stale, 'stale lastUpdateTime');
      await expectRefusal(client, col.doc('nope').update({ n: 1 }), 'NOT_FOUND', 'update of a missing document');
      if (client === 'admin') {
        // 8.x reports the 409 as it came, at once. (7.x reads 409 as ABORTED
        // and retries the commit until its deadline, against Google too, so
        // it is not tried there.)
        const code = await alpha.create({ n: 0 }).then(() => 'created', (e) => e.code);
        same(code, 409, 'create over an existing document (raw HTTP code, no retry)');
        await expectRefusal(client, alpha.create({ n: 0 }), 'ALREADY_EXISTS', 'create over an existing document');
      }
      if (client === 'grpc') {
        await expectRefusal(client, alpha.create({ n: 0 }), 'ALREADY_EXISTS', 'create over an existing document');
      }
      same((await alpha.get()).get('n'), 10, 'alpha.n after update');
    },
    delete: async () => {
      await col.doc('gamma').delete();
      expect(!(await col.doc('gamma').get()).exists, 'gamma is gone');
    },
    query: async () => {
      const top = await col.where('n', '>=', 2).orderBy('n', 'desc').limit(1).get();
      same(top.docs.map((d) => d.id), ['alpha'], 'n >= 2 desc limit 1');
      const all = await col.where('n', '>=', 2).orderBy('n').limit(5).get();
      same(all.docs.map((d) => [d.id, d.get('n')]), [['beta', 2], ['alpha', 10]], 'n >= 2 asc');
      const tagged = await col.where('tags', 'array-contains', 'x').get();
      same(tagged.docs.map((d) => d.id), ['alpha'], 'array-contains');
    },
    collectionGroup: async () => {
      await alpha.collection(sub).doc('s1').set({ kind: 'k', i: 1 });
      await col.doc('beta').collection(sub).doc('s2').set({ kind: 'k', i: 2 });
      await col.doc('beta').collection(sub).doc('s3').set({ kind: 'other', i: 3 });
      const found = await db.collectionGroup(sub).where('kind', '==', 'k').get();
      same(found.docs.map((d) => d.ref.path).sort(), [`${col.id}/alpha/${sub}/s1`, `${col.id}/beta/${sub}/s2`], 'collection group');
    },
    count: async () => {
      same((await col.count().get()).data().count, 2, 'count()');
      same((await col.where('n', '>', 5).count().get()).data().count, 1, 'count() with a filter');
    },
    batch: async () => {
      const batch = db.batch();
      batch.set(col.doc('delta'), { name: 'delta', n: 4 });
      batch.update(alpha, { batched: true, n: AdminFieldValue.increment(1) });
      batch.delete(col.doc('beta'));
      await batch.commit();
      const [a, b, d] = await db.getAll(alpha, col.doc('beta'), col.doc('delta'));
      same([a.get('batched'), a.get('n'), b.exists, d.get('name')], [true, 11, false, 'delta'], 'after the batch');
    },
    transaction: async () => {
      const n = await db.runTransaction(async (tx) => {
        const snap = await tx.get(alpha);
        tx.update(alpha, { n: snap.get('n') + 1 });
        return snap.get('n') + 1;
      });
      same(n, 12, 'transaction result');
      same((await alpha.get()).get('n'), 12, 'alpha.n after the transaction');
    },
    listCollections: async () => {
      const top = (await db.listCollections()).map((c) => c.id);
      expect(top.includes(col.id), `listCollections has ${col.id}: ${top}`);
      same((await alpha.listCollections()).map((c) => c.id), [sub], 'alpha.listCollections()');
    },
    vector: async () => {
      const rows = { a: [1, 0], b: [0, 3], c: [2, 2], d: [-1, 0], short: [1] };
      for (const [id, v] of Object.entries(rows)) {
        await vecs.doc(id).set({ v: AdminFieldValue.vector(v), color: id === 'c' ? 'blue' : 'red' });
      }
      await vecs.doc('plain').set({ v: [1, 0], color: 'red' });
      const got = (await vecs.doc('b').get()).get('v');
      expect(got instanceof VectorValue, `b.v reads back as a VectorValue: ${got}`);
      same(got.toArray(), [0, 3], 'b.v');
      // Arrays before vectors; vectors by dimension, then element by element.
      same((await vecs.orderBy('v').get()).docs.map((d) => d.id), ['plain', 'short', 'd', 'b', 'a', 'c'], 'orderBy a vector field');
    },
    findNearest: async () => {
      const red = await vecs.where('color', '==', 'red')
        .findNearest({ vectorField: 'v', queryVector: [1, 0], limit: 3, distanceMeasure: 'EUCLIDEAN', distanceResultField: 'dist' }).get();
      same(red.docs.map((d) => [d.id, d.get('dist')]), [['a', 0], ['d', 2], ['b', Math.sqrt(10)]], 'EUCLIDEAN, prefiltered, with distances');
      const dot = await vecs.findNearest({ vectorField: 'v', queryVector: [1, 0], limit: 10, distanceMeasure: 'DOT_PRODUCT', distanceThreshold: 1 }).get();
      same(dot.docs.map((d) => d.id), ['c', 'a'], 'DOT_PRODUCT >= 1, largest first');
      const cosine = await vecs.findNearest({ vectorField: 'v', queryVector: [1, 0], limit: 10, distanceMeasure: 'COSINE', distanceThreshold: 0.5 }).get();
      same(cosine.docs.map((d) => d.id), ['a', 'c'], 'COSINE <= 0.5, nearest first');
    },
    explain: async () => {
      const query = col.where('n', '>=', 2);
      const planned = await query.explain({ analyze: false });
      expect(planned.snapshot === null, 'a planned query returns no snapshot');
      expect(planned.metrics.planSummary.indexesUsed.length > 0, 'the plan names an index');
      expect(planned.metrics.executionStats === null, 'a planned query has no execution stats');
      const analyzed = await query.explain({ analyze: true });
      same(analyzed.snapshot.docs.map((d) => d.id), ['delta', 'alpha'], 'analyzed results');
      same(analyzed.metrics.executionStats.resultsReturned, 2, 'resultsReturned');
      expect(analyzed.metrics.executionStats.readOperations > 0, 'readOperations');
      // (On the vectors: through firegate, tests/peers/sdk.rs refuses aggregations
      // on admin's top-level collection.)
      const counted = await vecs.count().explain({ analyze: true });
      same(counted.snapshot.data().count, 6, 'analyzed count()');
      expect(counted.metrics.executionStats.readOperations > 0, 'aggregation readOperations');
    },
    partitions: async () => {
      // 300 documents, partitions of at least 128: three partitions.
      const batch = db.batch();
      for (let i = 0; i < 300; i += 1) {
        batch.set(alpha.collection(parts).doc(`p${String(i).padStart(3, '0')}`), { i });
      }
      await batch.commit();
      const partitions = [];
      for await (const partition of db.collectionGroup(parts).getPartitions(5)) {
        partitions.push(partition);
      }
      same(partitions.length, 3, 'getPartitions(5) over 300 documents');
      expect(partitions[0].startAt === undefined && partitions[2].endBefore === undefined, 'the ends are open');
      let seen = 0;
      for (const partition of partitions) {
        seen += (await partition.toQuery().get()).size;
      }
      same(seen, 300, 'documents read through the partitions');
    },
    // onSnapshot: the gRPC Listen stream, a document and a query target.
    listen: async () => {
      const doc = watch((next, fail) => alpha.onSnapshot(next, fail));
      try {
        await doc.until((s) => s.get('n') === 12, 'the first document snapshot');
        await alpha.update({ n: 13 });
        await doc.until((s) => s.get('n') === 13, 'the update');
      } finally {
        doc.stop();
      }
      const changes = (s) => s.docChanges().map((c) => [c.type, c.doc.id]);
      const query = watch((next, fail) => col.where('n', '>=', 5).onSnapshot(next, fail));
      try {
        await query.until((s) => JSON.stringify(s.docs.map((d) => d.id)) === '["alpha"]', 'the first query snapshot');
        await col.doc('epsilon').set({ n: 50 });
        await query.until((s) => JSON.stringify(changes(s)) === '[["added","epsilon"]]', 'a document joins');
        await col.doc('epsilon').update({ n: 51 });
        await query.until((s) => JSON.stringify(changes(s)) === '[["modified","epsilon"]]', 'a change');
        await alpha.update({ n: 0 });
        await query.until((s) => JSON.stringify(changes(s)) === '[["removed","alpha"]]', 'a document leaves');
        await col.doc('epsilon').delete();
        await query.until((s) => JSON.stringify(changes(s)) === '[["removed","epsilon"]]' && s.empty, 'a delete');
      } finally {
        query.stop();
      }
    },
    // BulkWriter (batchWrite, per-write status), listDocuments (showMissing)
    // and recursiveDelete (kindless query + batchWrite) leave nothing behind.
    cleanup: async () => {
      const writer = db.bulkWriter();
      const refused = writer.create(alpha, { n: 0 }).then(() => 'created', (e) => e.code);
      writer.set(col.doc('beta').collection(sub).doc('s4'), { kind: 'k' });
      await writer.close();
      same(await refused, 6, 'BulkWriter create over an existing document (ALREADY_EXISTS)');
      same((await col.listDocuments()).map((d) => d.id).sort(), ['alpha', 'beta', 'delta'], 'listDocuments shows beta, which only has subcollections');
      await db.recursiveDelete(col);
      same((await col.get()).size, 0, 'documents left after recursiveDelete');
      same((await db.collectionGroup(sub).get()).size, 0, 'subcollection documents left after recursiveDelete');
    },
  };
}

function liteSteps(args, token) {
  const app = initializeApp({ projectId: args.project, apiKey: 'firegate-test-key' }, `${args.prefix}-lite`);
  const db = lite.getFirestore(app);
  lite.setLogLevel('silent');
  lite.connectFirestoreEmulator(db, args.host, args.port, token ? { mockUserToken: token } : {});
  const colId = `${args.prefix}_lite`;
  const sub = `${args.prefix}_lite_sub`;
  const col = lite.collection(db, colId);
  const alpha = lite.doc(col, 'alpha');
  const data = async (ref) => (await lite.getDoc(ref)).data();
  return {
    close: () => deleteApp(app),
    set: async () => {
      await lite.setDoc(alpha, { name: 'alpha', n: 1, tags: ['x'], nested: { a: true }, at: lite.Timestamp.fromMillis(Date.UTC(2024, 0, 2, 3, 4, 5)) });
      await lite.setDoc(lite.doc(col, 'beta'), { name: 'beta', n: 2 });
      await lite.setDoc(lite.doc(col, 'gamma'), { name: 'gamma', n: 3 });
    },
    get: async () => {
      const got = await data(alpha);
      same([got.name, got.n, got.tags, got.nested], ['alpha', 1, ['x'], { a: true }], 'alpha');
      same(got.at.toDate().toISOString(), '2024-01-02T03:04:05.000Z', 'alpha.at');
      expect(!(await lite.getDoc(lite.doc(col, 'nope'))).exists(), 'a missing document does not exist');
    },
    update: async () => {
      // updateDoc carries the precondition `exists: true`.
      await lite.updateDoc(alpha, { n: 10, 'nested.b': lite.serverTimestamp() });
      await expectRefusal('lite', lite.updateDoc(lite.doc(col, 'nope'), { n: 1 }), 'NOT_FOUND', 'update of a missing document');
      const got = await data(alpha);
      same([got.n, got.nested.a, got.nested.b instanceof lite.Timestamp], [10, true, true], 'alpha after update');
    },
    delete: async () => {
      await lite.deleteDoc(lite.doc(col, 'gamma'));
      expect(!(await lite.getDoc(lite.doc(col, 'gamma'))).exists(), 'gamma is gone');
    },
    query: async () => {
      const { where, orderBy, limit, query, getDocs } = lite;
      const top = await getDocs(query(col, where('n', '>=', 2), orderBy('n', 'desc'), limit(1)));
      same(top.docs.map((d) => d.id), ['alpha'], 'n >= 2 desc limit 1');
      const any = await getDocs(query(col, lite.or(where('name', '==', 'beta'), where('n', 'in', [10, 11]))));
      same(any.docs.map((d) => d.id), ['alpha', 'beta'], 'or / in');
    },
    collectionGroup: async () => {
      await lite.setDoc(lite.doc(alpha, sub, 's1'), { kind: 'k', i: 1 });
      await lite.setDoc(lite.doc(col, 'beta', sub, 's2'), { kind: 'k', i: 2 });
      await lite.setDoc(lite.doc(col, 'beta', sub, 's3'), { kind: 'other', i: 3 });
      const found = await lite.getDocs(lite.query(lite.collectionGroup(db, sub), lite.where('kind', '==', 'k')));
      same(found.docs.map((d) => d.ref.path).sort(), [`${colId}/alpha/${sub}/s1`, `${colId}/beta/${sub}/s2`], 'collection group');
    },
    count: async () => {
      same((await lite.getCount(col)).data().count, 2, 'count()');
      const agg = await lite.getAggregate(col, { total: lite.sum('n'), mean: lite.average('n') });
      same(agg.data(), { total: 12, mean: 6 }, 'sum / average');
    },
    batch: async () => {
      const batch = lite.writeBatch(db);
      batch.set(lite.doc(col, 'delta'), { name: 'delta', n: 4 });
      batch.update(alpha, { batched: true, n: lite.increment(1) });
      batch.delete(lite.doc(col, 'beta'));
      await batch.commit();
      const got = await data(alpha);
      same([got.batched, got.n], [true, 11], 'alpha after the batch');
      expect(!(await lite.getDoc(lite.doc(col, 'beta'))).exists(), 'beta deleted by the batch');
      same((await data(lite.doc(col, 'delta'))).name, 'delta', 'delta set by the batch');
    },
    transaction: async () => {
      const n = await lite.runTransaction(db, async (tx) => {
        const snap = await tx.get(alpha);
        tx.update(alpha, { n: snap.get('n') + 1 });
        return snap.get('n') + 1;
      });
      same(n, 12, 'transaction result');
      same((await data(alpha)).n, 12, 'alpha.n after the transaction');
    },
    // firebase/firestore/lite has no listCollections: list the documents the
    // earlier steps left instead, by name.
    listCollections: async () => {
      const left = await lite.getDocs(lite.query(col, lite.orderBy(lite.documentId())));
      same(left.docs.map((d) => d.id), ['alpha', 'delta'], 'documents left');
    },
    vector: async () => {
      const ref = lite.doc(col, 'vec');
      await lite.setDoc(ref, { v: lite.vector([1, 2.5]) });
      const got = (await lite.getDoc(ref)).get('v');
      expect(got instanceof lite.VectorValue, `v reads back as a VectorValue: ${got}`);
      same(got.toArray(), [1, 2.5], 'v');
      await lite.deleteDoc(ref);
    },
    cleanup: async () => {
      const batch = lite.writeBatch(db);
      for (const path of ['alpha', `alpha/${sub}/s1`, 'delta', `beta/${sub}/s2`, `beta/${sub}/s3`]) {
        batch.delete(lite.doc(col, path));
      }
      await batch.commit();
      same((await lite.getDocs(lite.query(lite.collectionGroup(db, sub)))).size, 0, 'subcollection documents left');
      same((await lite.getCount(col)).data().count, 0, 'documents left');
    },
  };
}

async function main() {
  const args = parseArgs(process.argv.slice(2));
  let failed = 0;
  for (const client of args.clients) {
    const steps = client in ADMIN ? adminSteps(client, args, args.token) : client === 'lite' ? liteSteps(args, args.token) : null;
    if (!steps) throw new Error(`unknown client ${client}`);
    for (const step of STEPS[client]) {
      const denied = args.deny.has(step) || args.deny.has(`${client}:${step}`);
      const line = { client, step, expected: denied ? 'PERMISSION_DENIED' : 'ok' };
      try {
        if (denied) {
          await expectRefusal(client, steps[step](), 'PERMISSION_DENIED', step);
        } else {
          await steps[step]();
        }
        line.pass = true;
      } catch (error) {
        line.pass = false;
        line.error = error instanceof Expectation ? error.message : `${statusOf(client, error)}: ${error?.message ?? error}`;
        failed += 1;
      }
      console.log(JSON.stringify(line));
    }
    await steps.close();
  }
  process.exitCode = failed === 0 ? 0 : 1;
}

main().catch((error) => {
  console.error(error);
  process.exitCode = 2;
});
