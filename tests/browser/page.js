// The page under test: firebase/firestore/lite reads two documents through
// firegate and leaves what happened in `window.result`. Bundled by run.mjs.
import { initializeApp } from 'firebase/app';
import {
  getFirestore, connectFirestoreEmulator, doc, getDoc, setLogLevel,
} from 'firebase/firestore/lite';

const cfg = window.FIREGATE;
const app = initializeApp({ projectId: cfg.project, apiKey: 'firegate-browser-test' });
const db = getFirestore(app);
setLogLevel('silent');
// Emulator mode speaks plain HTTP to host:port; a string mockUserToken is
// sent as the bearer token as it is.
connectFirestoreEmulator(db, cfg.host, cfg.port, { mockUserToken: cfg.token });

async function read(path) {
  try {
    const snap = await getDoc(doc(db, path));
    return { ok: true, exists: snap.exists(), data: snap.data() ?? null };
  } catch (e) {
    return { ok: false, code: e.code ?? String(e), message: String(e.message ?? e) };
  }
}

window.result = { origin: location.origin, allowed: await read(cfg.allowed), refused: await read(cfg.refused) };
