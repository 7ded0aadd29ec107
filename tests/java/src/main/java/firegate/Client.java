package firegate;

import com.google.api.core.ApiFuture;
import com.google.api.gax.core.FixedCredentialsProvider;
import com.google.api.gax.grpc.InstantiatingGrpcChannelProvider;
import com.google.api.gax.rpc.ApiException;
import com.google.auth.Credentials;
import com.google.auth.oauth2.AccessToken;
import com.google.auth.oauth2.GoogleCredentials;
import com.google.cloud.firestore.AggregateField;
import com.google.cloud.firestore.AggregateQuerySnapshot;
import com.google.cloud.firestore.CollectionReference;
import com.google.cloud.firestore.DocumentChange;
import com.google.cloud.firestore.DocumentReference;
import com.google.cloud.firestore.DocumentSnapshot;
import com.google.cloud.firestore.FieldValue;
import com.google.cloud.firestore.Firestore;
import com.google.cloud.firestore.FirestoreException;
import com.google.cloud.firestore.FirestoreOptions;
import com.google.cloud.firestore.ListenerRegistration;
import com.google.cloud.firestore.Precondition;
import com.google.cloud.firestore.Query;
import com.google.cloud.firestore.QueryDocumentSnapshot;
import com.google.cloud.firestore.QuerySnapshot;
import com.google.cloud.firestore.WriteBatch;
import io.grpc.CallOptions;
import io.grpc.Channel;
import io.grpc.ClientCall;
import io.grpc.ClientInterceptor;
import io.grpc.ManagedChannelBuilder;
import io.grpc.ManagedChannelProvider;
import io.grpc.ManagedChannelRegistry;
import io.grpc.MethodDescriptor;
import io.grpc.StatusRuntimeException;
import io.grpc.auth.MoreCallCredentials;
import io.grpc.netty.shaded.io.grpc.netty.GrpcSslContexts;
import io.grpc.netty.shaded.io.grpc.netty.NettyChannelBuilder;
import java.io.File;
import java.net.InetSocketAddress;
import java.net.SocketAddress;
import java.net.URI;
import java.util.ArrayList;
import java.util.Collection;
import java.util.Date;
import java.util.HashMap;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Objects;
import java.util.Set;
import java.util.concurrent.BlockingQueue;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.LinkedBlockingQueue;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.function.Predicate;

/**
 * Drives the official Java Firestore client (gRPC only) against a Firestore gRPC endpoint:
 * firegate's emulator, or firegate in front of it.
 *
 * <pre>
 *   FIRESTORE_EMULATOR_HOST=127.0.0.1:8081 java firegate.Client --project demo --prefix run1
 *   java firegate.Client --endpoint 127.0.0.1:8443 --tls-root ca.pem --token JWT ...
 * </pre>
 *
 * <p>With FIRESTORE_EMULATOR_HOST the client speaks plaintext and sends {@code Bearer owner};
 * --token replaces it. With --endpoint it speaks TLS (trusting --tls-root) and sends --token as
 * call credentials. --deny names steps expected to be refused with PERMISSION_DENIED. Prints one
 * JSON line per step; exits 1 if any expectation failed. Steps run in order and later ones read
 * what earlier ones wrote.
 */
public final class Client {
  static final List<String> STEPS =
      List.of(
          "set", "get", "update", "delete", "query", "aggregate", "batch", "transaction",
          "listCollections", "watchDocument", "watchQuery", "cleanup");
  /** How long a listener may take to hear a change; generous for a loaded CI box. */
  static final long WAIT_SECONDS = 20;

  static final class Expectation extends RuntimeException {
    Expectation(String message) {
      super(message);
    }
  }

  interface Step {
    void run() throws Exception;
  }

  static void expect(boolean condition, String message) {
    if (!condition) throw new Expectation(message);
  }

  static void same(Object actual, Object wanted, String what) {
    expect(Objects.equals(actual, wanted), what + ": got " + actual + ", want " + wanted);
  }

  /** The gRPC status code a failed call carried, wherever the client wrapped it. */
  static String code(Throwable error) {
    for (Throwable t = error; t != null; t = t.getCause()) {
      if (t instanceof FirestoreException f && f.getStatus() != null) {
        return f.getStatus().getCode().name();
      }
      if (t instanceof ApiException a) return a.getStatusCode().getCode().name();
      if (t instanceof StatusRuntimeException s) return s.getStatus().getCode().name();
    }
    return "none (" + error + ")";
  }

  static void refused(String wanted, Step call, String what) throws Exception {
    try {
      call.run();
    } catch (Expectation e) {
      throw e;
    } catch (Exception e) {
      same(code(e), wanted, what);
      return;
    }
    throw new Expectation(what + ": want " + wanted + ", but it succeeded");
  }

  static <T> T await(ApiFuture<T> future) throws Exception {
    return future.get(60, TimeUnit.SECONDS);
  }

  // --- connecting ---------------------------------------------------------------------------

  static Firestore connect(Map<String, String> args) throws Exception {
    String token = args.get("token");
    FirestoreOptions.Builder options =
        FirestoreOptions.newBuilder().setProjectId(args.get("project"));
    if (System.getenv("FIRESTORE_EMULATOR_HOST") != null) {
      // Emulator mode replaces any channel provider and credentials with its own (plaintext,
      // `Bearer owner`), so the caller's token goes in through grpc-java's channel registry.
      if (token != null) ManagedChannelRegistry.getDefaultRegistry().register(new WithToken(token));
      return options.build().getService();
    }
    String endpoint = args.get("endpoint");
    File ca = new File(args.get("tls-root"));
    // The client treats a host containing "localhost" as an emulator (plaintext, no
    // credentials), so a deployment's endpoint is given by name or address, not "localhost".
    InstantiatingGrpcChannelProvider channel =
        InstantiatingGrpcChannelProvider.newBuilder()
            .setEndpoint(endpoint)
            .setChannelConfigurator(builder -> trusting(builder, ca))
            .build();
    AccessToken access = new AccessToken(token, new Date(System.currentTimeMillis() + 3_600_000));
    return options
        .setHost(endpoint)
        .setChannelProvider(channel)
        .setCredentialsProvider(FixedCredentialsProvider.create(GoogleCredentials.create(access)))
        .build()
        .getService();
  }

  static ManagedChannelBuilder<?> trusting(ManagedChannelBuilder<?> builder, File ca) {
    try {
      return ((NettyChannelBuilder) builder).sslContext(GrpcSslContexts.forClient().trustManager(ca).build());
    } catch (Exception e) {
      throw new IllegalStateException("TLS context trusting " + ca, e);
    }
  }

  /**
   * A channel provider ahead of Netty's that adds {@link #interceptor}: every call's credentials
   * (the emulator's {@code Bearer owner}) replaced with the caller's token.
   */
  static final class WithToken extends ManagedChannelProvider {
    private final ClientInterceptor interceptor;

    WithToken(String token) {
      Credentials credentials = new BearerToken(token);
      this.interceptor =
          new ClientInterceptor() {
            @Override
            public <Q, A> ClientCall<Q, A> interceptCall(
                MethodDescriptor<Q, A> method, CallOptions options, Channel next) {
              return next.newCall(
                  method, options.withCallCredentials(MoreCallCredentials.from(credentials)));
            }
          };
    }

    @Override
    protected boolean isAvailable() {
      return true;
    }

    @Override
    protected int priority() {
      return 10;
    }

    @Override
    protected ManagedChannelBuilder<?> builderForAddress(String name, int port) {
      return NettyChannelBuilder.forAddress(name, port).intercept(interceptor);
    }

    @Override
    protected ManagedChannelBuilder<?> builderForTarget(String target) {
      return NettyChannelBuilder.forTarget(target).intercept(interceptor);
    }

    @Override
    protected Collection<Class<? extends SocketAddress>> getSupportedSocketAddressTypes() {
      return List.of(InetSocketAddress.class);
    }
  }

  /**
   * A bearer token as call credentials. Not a {@code GoogleCredentials}: grpc-java sends those
   * only over TLS, and emulator mode is plaintext.
   */
  static final class BearerToken extends Credentials {
    private final Map<String, List<String>> headers;

    BearerToken(String token) {
      this.headers = Map.of("Authorization", List.of("Bearer " + token));
    }

    @Override
    public String getAuthenticationType() {
      return "Bearer";
    }

    @Override
    public Map<String, List<String>> getRequestMetadata(URI uri) {
      return headers;
    }

    @Override
    public boolean hasRequestMetadata() {
      return true;
    }

    @Override
    public boolean hasRequestMetadataOnly() {
      return true;
    }

    @Override
    public void refresh() {}
  }

  // --- listeners ----------------------------------------------------------------------------

  /** Snapshots a listener delivered, waited on from the main thread. */
  static final class Events<T> {
    final BlockingQueue<Object> queue = new LinkedBlockingQueue<>();

    void deliver(T snapshot, FirestoreException error) {
      queue.add(error != null ? error : snapshot);
    }

    @SuppressWarnings("unchecked")
    T waitFor(Predicate<T> predicate, String what) throws Exception {
      long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(WAIT_SECONDS);
      int others = 0;
      while (true) {
        Object next = queue.poll(Math.max(0, deadline - System.nanoTime()), TimeUnit.NANOSECONDS);
        if (next == null) {
          throw new Expectation(what + ": no such snapshot within " + WAIT_SECONDS + "s (" + others + " others)");
        }
        if (next instanceof FirestoreException e) throw e;
        if (predicate.test((T) next)) return (T) next;
        others++;
      }
    }
  }

  static List<String> changes(QuerySnapshot snapshot) {
    List<String> out = new ArrayList<>();
    for (DocumentChange c : snapshot.getDocumentChanges()) {
      out.add(c.getType() + " " + c.getDocument().getId());
    }
    out.sort(null);
    return out;
  }

  static List<String> ids(QuerySnapshot snapshot) {
    List<String> out = new ArrayList<>();
    for (QueryDocumentSnapshot d : snapshot.getDocuments()) out.add(d.getId());
    return out;
  }

  // --- the steps ----------------------------------------------------------------------------

  static Map<String, Step> steps(Firestore db, String prefix) {
    CollectionReference col = db.collection(prefix + "_java");
    DocumentReference alpha = col.document("alpha");
    DocumentReference nope = col.document("nope");
    String sub = prefix + "_java_sub";
    Map<String, Step> table = new LinkedHashMap<>();

    table.put("set", () -> {
      Map<String, Object> doc = new HashMap<>();
      doc.put("name", "alpha");
      doc.put("n", 1);
      doc.put("tags", List.of("x"));
      doc.put("nested", Map.of("a", true));
      await(alpha.set(doc));
      await(col.document("beta").set(Map.of("name", "beta", "n", 2)));
      await(col.document("gamma").set(Map.of("name", "gamma", "n", 3)));
    });

    table.put("get", () -> {
      DocumentSnapshot snap = await(alpha.get());
      expect(snap.exists(), "alpha exists");
      same(
          List.of(snap.get("name"), snap.get("n"), snap.get("tags"), snap.get("nested")),
          List.of("alpha", 1L, List.of("x"), Map.of("a", true)),
          "alpha");
      expect(!await(nope.get()).exists(), "a missing document does not exist");
      Map<String, Boolean> got = new HashMap<>();
      for (DocumentSnapshot s : await(db.getAll(alpha, nope))) got.put(s.getId(), s.exists());
      same(got, Map.of("alpha", true, "nope", false), "getAll");
    });

    table.put("update", () -> {
      DocumentSnapshot before = await(alpha.get());
      await(alpha.update(Map.of("n", 10), Precondition.updatedAt(before.getUpdateTime())));
      refused(
          "FAILED_PRECONDITION",
          () -> await(alpha.update(Map.of("n", 99), Precondition.updatedAt(before.getUpdateTime()))),
          "stale updateTime");
      refused("NOT_FOUND", () -> await(nope.update(Map.of("n", 1))), "update of a missing document");
      refused("ALREADY_EXISTS", () -> await(alpha.create(Map.of("n", 0))), "create over an existing document");
      same(await(alpha.get()).get("n"), 10L, "alpha.n after update");
    });

    table.put("delete", () -> {
      await(col.document("gamma").delete());
      expect(!await(col.document("gamma").get()).exists(), "gamma is gone");
    });

    table.put("query", () -> {
      QuerySnapshot top =
          await(col.whereGreaterThanOrEqualTo("n", 2).orderBy("n", Query.Direction.DESCENDING).limit(1).get());
      same(ids(top), List.of("alpha"), "n >= 2 desc limit 1");
      QuerySnapshot both = await(col.whereGreaterThanOrEqualTo("n", 2).orderBy("n").get());
      List<String> pairs = new ArrayList<>();
      for (QueryDocumentSnapshot d : both.getDocuments()) pairs.add(d.getId() + "=" + d.get("n"));
      same(pairs, List.of("beta=2", "alpha=10"), "n >= 2 asc");
      same(ids(await(col.whereArrayContains("tags", "x").get())), List.of("alpha"), "arrayContains");
    });

    table.put("aggregate", () -> {
      AggregateQuerySnapshot all =
          await(col.aggregate(AggregateField.count(), AggregateField.sum("n"), AggregateField.average("n")).get());
      same(
          List.of(all.get(AggregateField.count()), all.get(AggregateField.sum("n")), all.get(AggregateField.average("n"))),
          List.of(2L, 12L, 6.0),
          "count, sum and avg");
      same(await(col.whereGreaterThan("n", 5).count().get()).getCount(), 1L, "count() with a filter");
    });

    table.put("batch", () -> {
      WriteBatch batch = db.batch();
      batch.set(col.document("delta"), Map.of("name", "delta", "n", 4));
      batch.update(alpha, Map.of("batched", true, "n", FieldValue.increment(1)));
      batch.delete(col.document("beta"));
      await(batch.commit());
      DocumentSnapshot a = await(alpha.get());
      DocumentSnapshot b = await(col.document("beta").get());
      DocumentSnapshot d = await(col.document("delta").get());
      same(
          List.of(a.get("batched"), a.get("n"), b.exists(), d.get("name")),
          List.of(true, 11L, false, "delta"),
          "after the batch");
    });

    table.put("transaction", () -> {
      // The first attempt's read goes stale (a write from outside lands before its commit), so
      // its commit is ABORTED and the client runs the function again.
      AtomicInteger attempts = new AtomicInteger();
      long result =
          await(
              db.runTransaction(
                  tx -> {
                    long n = tx.get(alpha).get().getLong("n");
                    if (attempts.incrementAndGet() == 1) {
                      alpha.update("n", FieldValue.increment(1)).get();
                    }
                    tx.update(alpha, "n", n + 1);
                    return n + 1;
                  }));
      same(attempts.get(), 2, "attempts");
      same(result, 13L, "transaction result");
      same(await(alpha.get()).get("n"), 13L, "alpha.n after the transaction");
    });

    table.put("listCollections", () -> {
      await(alpha.collection(sub).document("s1").set(Map.of("i", 1)));
      List<String> top = new ArrayList<>();
      for (CollectionReference c : db.listCollections()) top.add(c.getId());
      expect(top.contains(col.getId()), "listCollections has " + col.getId() + ": " + top);
      List<String> under = new ArrayList<>();
      for (CollectionReference c : alpha.listCollections()) under.add(c.getId());
      same(under, List.of(sub), "alpha.listCollections()");
    });

    table.put("watchDocument", () -> {
      Events<DocumentSnapshot> events = new Events<>();
      ListenerRegistration watch = alpha.addSnapshotListener(events::deliver);
      try {
        events.waitFor(s -> s.exists() && Long.valueOf(13).equals(s.get("n")), "the first snapshot");
        await(alpha.update("n", 14));
        events.waitFor(s -> Long.valueOf(14).equals(s.get("n")), "the update");
      } finally {
        watch.remove();
      }
    });

    table.put("watchQuery", () -> {
      Events<QuerySnapshot> events = new Events<>();
      ListenerRegistration watch = col.whereGreaterThanOrEqualTo("n", 5).addSnapshotListener(events::deliver);
      DocumentReference epsilon = col.document("epsilon");
      try {
        events.waitFor(s -> ids(s).equals(List.of("alpha")), "the first snapshot");
        await(epsilon.set(Map.of("n", 50)));
        events.waitFor(s -> changes(s).equals(List.of("ADDED epsilon")), "a document joins");
        await(epsilon.update("n", 51));
        events.waitFor(s -> changes(s).equals(List.of("MODIFIED epsilon")), "a change");
        await(alpha.update("n", 0));
        events.waitFor(s -> changes(s).equals(List.of("REMOVED alpha")), "a document leaves");
        await(epsilon.delete());
        events.waitFor(s -> changes(s).equals(List.of("REMOVED epsilon")) && s.isEmpty(), "a delete");
      } finally {
        watch.remove();
      }
    });

    table.put("cleanup", () -> {
      await(db.recursiveDelete(col));
      same(await(col.get()).size(), 0, "documents left after recursiveDelete");
    });
    return table;
  }

  // --- the run ------------------------------------------------------------------------------

  static Map<String, String> parse(String[] argv) {
    Map<String, String> args = new HashMap<>();
    args.put("project", "demo-firegate");
    args.put("prefix", "run" + System.currentTimeMillis());
    args.put("steps", String.join(",", STEPS));
    args.put("deny", "");
    Set<String> known = Set.of("endpoint", "tls-root", "token", "project", "prefix", "steps", "deny");
    for (int i = 0; i + 1 < argv.length; i += 2) {
      String key = argv[i].replaceFirst("^--", "");
      if (!known.contains(key)) throw new IllegalArgumentException("unknown argument " + argv[i]);
      args.put(key, argv[i + 1]);
    }
    if (argv.length % 2 != 0) throw new IllegalArgumentException("a value is missing: " + List.of(argv));
    boolean emulator = System.getenv("FIRESTORE_EMULATOR_HOST") != null;
    if (!emulator && (args.get("endpoint") == null || args.get("tls-root") == null || args.get("token") == null)) {
      throw new IllegalArgumentException("FIRESTORE_EMULATOR_HOST, or --endpoint, --tls-root and --token");
    }
    return args;
  }

  static String json(String s) {
    StringBuilder out = new StringBuilder("\"");
    for (char c : s.toCharArray()) {
      switch (c) {
        case '"' -> out.append("\\\"");
        case '\\' -> out.append("\\\\");
        case '\n' -> out.append("\\n");
        default -> {
          if (c < 0x20) out.append(String.format("\\u%04x", (int) c));
          else out.append(c);
        }
      }
    }
    return out.append('"').toString();
  }

  public static void main(String[] argv) throws Exception {
    Map<String, String> args = parse(argv);
    Set<String> deny = Set.of(args.get("deny").split(","));
    Firestore db = connect(args);
    Map<String, Step> table = steps(db, args.get("prefix"));
    boolean failed = false;
    for (String name : args.get("steps").split(",")) {
      if (name.isEmpty()) continue;
      Step step = table.get(name);
      if (step == null) throw new IllegalArgumentException("unknown step " + name);
      long started = System.nanoTime();
      StringBuilder line = new StringBuilder("{\"client\":\"java\",\"step\":" + json(name));
      try {
        if (deny.contains(name)) refused("PERMISSION_DENIED", step, name + " is refused");
        else step.run();
        line.append(",\"ok\":true");
      } catch (Exception error) {
        failed = true;
        Throwable cause = error instanceof ExecutionException && error.getCause() != null ? error.getCause() : error;
        line.append(",\"ok\":false,\"error\":").append(json(cause.getClass().getSimpleName() + ": " + cause.getMessage()));
        if (!(cause instanceof Expectation)) line.append(",\"code\":").append(json(code(cause)));
      }
      line.append(",\"ms\":").append(TimeUnit.NANOSECONDS.toMillis(System.nanoTime() - started)).append('}');
      System.out.println(line);
      System.out.flush();
    }
    // The client's listener and channel threads may linger; the verdict is already out.
    Runtime.getRuntime().halt(failed ? 1 : 0);
  }
}
