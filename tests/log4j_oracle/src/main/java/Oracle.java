// Differential-test oracle for the l4s detection engine.
//
// Reads one request per line on stdin: "L" or "T" followed by a base64 (UTF-8)
// string. For "L" (Log4j) it runs
// log4j-core 2.14.1's own MessagePatternConverter -> StrSubstitutor -> Interpolator
// over it, exactly as `%m` in a PatternLayout would. The `jndi` lookup is replaced
// by a recorder that notes the name it is given and returns null (what JndiLookup
// returns when a lookup fails); it never calls JNDI. Lookups whose answer belongs
// to the victim are stubbed the way the engine models them: env, sys and
// jvmrunargs are unset; java, event and log4j answer a placeholder. Everything
// else (lower, upper, date, ctx, main, map, sd, marker, bundle and unknown
// prefixes) is Log4j's own code. For "T" (Commons Text 1.9) it runs
// StringSubstitutor with the interpolator createInterpolator() uses, the script,
// dns and url lookups replaced by recorders and base64Decoder/urlDecoder real;
// the other default lookups (env, sys, file, ...) are left out, i.e. unset.
// Writes one JSON object per input line.
//
// No network: a SecurityManager refuses every socket permission and connect
// (which also covers DNS resolution), on top of no real jndi lookup existing.

import java.io.BufferedReader;
import java.io.InputStreamReader;
import java.io.PrintStream;
import java.net.InetAddress;
import java.net.SocketPermission;
import java.nio.charset.StandardCharsets;
import java.security.Permission;
import java.util.ArrayList;
import java.util.Base64;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.TreeSet;

import org.apache.commons.text.StringSubstitutor;
import org.apache.commons.text.lookup.StringLookupFactory;
import org.apache.logging.log4j.Level;
import org.apache.logging.log4j.core.LogEvent;
import org.apache.logging.log4j.core.config.DefaultConfiguration;
import org.apache.logging.log4j.core.impl.Log4jLogEvent;
import org.apache.logging.log4j.core.lookup.Interpolator;
import org.apache.logging.log4j.core.lookup.MapLookup;
import org.apache.logging.log4j.core.lookup.StrLookup;
import org.apache.logging.log4j.core.pattern.MessagePatternConverter;
import org.apache.logging.log4j.message.SimpleMessage;

public final class Oracle {
    static final String OPEN = "\u27ea";
    static final String CLOSE = "\u27eb";
    static final List<String> CALLS = new ArrayList<>();

    /** Records the JNDI name; performs nothing. */
    static final class JndiRecorder implements StrLookup {
        @Override public String lookup(String key) { CALLS.add(key); return null; }
        @Override public String lookup(LogEvent event, String key) { CALLS.add(key); return null; }
    }

    /** A victim value modelled as unset. */
    static final class Unset implements StrLookup {
        @Override public String lookup(String key) { return null; }
        @Override public String lookup(LogEvent event, String key) { return null; }
    }

    /** A victim value that always exists: answered by a placeholder. */
    static final class Placeholder implements StrLookup {
        private final String prefix;
        private final Set<String> keys;
        private final boolean throwOnUnknown;

        Placeholder(String prefix, boolean throwOnUnknown, String... keys) {
            this.prefix = prefix;
            this.keys = Set.of(keys);
            this.throwOnUnknown = throwOnUnknown;
        }

        @Override public String lookup(String key) { return lookup(null, key); }

        @Override public String lookup(LogEvent event, String key) {
            if (keys.contains(key)) {
                return OPEN + prefix + ":" + key + CLOSE;
            }
            if (throwOnUnknown) {
                throw new IllegalArgumentException(key); // as JavaLookup does
            }
            return null;
        }
    }

    /** Refuses all network access, including name resolution. */
    static final class NoNetwork extends SecurityManager {
        @Override public void checkPermission(Permission perm) {
            if (perm instanceof SocketPermission) {
                throw new SecurityException("oracle: network disabled: " + perm);
            }
        }
        @Override public void checkPermission(Permission perm, Object context) { checkPermission(perm); }
        @Override public void checkConnect(String host, int port) { deny(); }
        @Override public void checkConnect(String host, int port, Object context) { deny(); }
        @Override public void checkListen(int port) { deny(); }
        @Override public void checkAccept(String host, int port) { deny(); }
        @Override public void checkMulticast(InetAddress address) { deny(); }
        private static void deny() { throw new SecurityException("oracle: network disabled"); }
    }

    public static void main(String[] args) throws Exception {
        System.setSecurityManager(new NoNetwork());
        PrintStream out = new PrintStream(System.out, true, "UTF-8");

        Map<String, String> properties = new HashMap<>();
        properties.put("hostName", OPEN + "hostName" + CLOSE);
        properties.put("contextName", OPEN + "contextName" + CLOSE);
        // The plugin-scanning constructor, as AbstractConfiguration.doConfigure uses.
        Interpolator interpolator = new Interpolator(new MapLookup(properties), null);
        Map<String, StrLookup> lookups = interpolator.getStrLookupMap();
        lookups.put("jndi", new JndiRecorder());
        lookups.put("env", new Unset());
        lookups.put("sys", new Unset());
        lookups.put("jvmrunargs", new Unset());
        lookups.put("java", new Placeholder("java", true, "version", "runtime", "vm", "os", "hw", "locale"));
        lookups.put("event", new Placeholder("event", false,
                "ThreadName", "Level", "ThreadId", "Timestamp", "Logger", "Message"));
        lookups.put("log4j", new Placeholder("log4j", false, "configLocation", "configParentLocation"));

        DefaultConfiguration config = new DefaultConfiguration();
        config.getStrSubstitutor().setVariableResolver(interpolator);
        MessagePatternConverter converter = MessagePatternConverter.newInstance(config, null);
        out.println("{\"ready\":true,\"lookups\":" + jsonList(new ArrayList<>(new TreeSet<>(lookups.keySet()))) + "}");

        Map<String, org.apache.commons.text.lookup.StringLookup> textLookups = new HashMap<>();
        for (String name : new String[] {"script", "dns", "url"}) {
            textLookups.put(name, key -> {
                CALLS.add(name + ":" + key);
                return null;
            });
        }
        textLookups.put("base64decoder", StringLookupFactory.INSTANCE.base64DecoderStringLookup());
        textLookups.put("urldecoder", StringLookupFactory.INSTANCE.urlDecoderStringLookup());
        StringSubstitutor text = new StringSubstitutor(
                StringLookupFactory.INSTANCE.interpolatorStringLookup(textLookups, null, false));

        BufferedReader in = new BufferedReader(new InputStreamReader(System.in, StandardCharsets.US_ASCII));
        String line;
        while ((line = in.readLine()) != null) {
            line = line.trim();
            String value = new String(Base64.getDecoder().decode(line.substring(1)), StandardCharsets.UTF_8);
            CALLS.clear();
            if (line.startsWith("T")) {
                String replaced = null;
                String failure = null;
                try {
                    replaced = text.replace(value);
                } catch (Throwable t) {
                    failure = t.getClass().getSimpleName();
                }
                out.println("{\"calls\":" + jsonList(CALLS) + ",\"error\":"
                        + (failure == null ? "null" : json(failure)) + ",\"output\":"
                        + (replaced == null ? "null" : json(replaced)) + "}");
                continue;
            }
            LogEvent event = Log4jLogEvent.newBuilder()
                    .setLoggerName("oracle")
                    .setLevel(Level.INFO)
                    .setTimeMillis(1L) // 0 would mean "now" to the builder
                    .setMessage(new SimpleMessage(value))
                    .build();
            StringBuilder rendered = new StringBuilder();
            String error = null;
            try {
                converter.format(event, rendered);
            } catch (Throwable t) {
                error = t.getClass().getSimpleName();
            }
            out.println("{\"jndi\":" + jsonList(CALLS) + ",\"error\":"
                    + (error == null ? "null" : json(error)) + ",\"output\":"
                    + (error == null ? json(rendered.toString()) : "null") + "}");
        }
    }

    static String jsonList(List<String> items) {
        StringBuilder sb = new StringBuilder("[");
        for (int i = 0; i < items.size(); i++) {
            if (i > 0) sb.append(',');
            sb.append(json(items.get(i)));
        }
        return sb.append(']').toString();
    }

    static String json(String s) {
        StringBuilder sb = new StringBuilder("\"");
        for (int i = 0; i < s.length(); i++) {
            char c = s.charAt(i);
            if (c == '"' || c == '\\') {
                sb.append('\\').append(c);
            } else if (c < 0x20 || c > 0x7e) {
                sb.append(String.format("\\u%04x", (int) c));
            } else {
                sb.append(c);
            }
        }
        return sb.append('"').toString();
    }
}
