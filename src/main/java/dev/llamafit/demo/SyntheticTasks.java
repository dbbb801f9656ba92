// Small string tasks generated in code (reverse, sort, ...), written as chat JSONL for the built-in demo.
package dev.llamafit.demo;

import java.io.IOException;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.HashSet;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.SplittableRandom;

import dev.llamafit.io.AtomicFiles;
import dev.llamafit.io.Json;

/**
 * Tasks whose answers a program can check exactly, so the demo measures accuracy rather than a loss alone. A
 * prompt is {@code "<op> <letters>"} (e.g. {@code "reverse kqbd"}) and the answer is the transformed letters.
 * The operation word is part of the prompt so one model can hold several skills, as with real instructions.
 */
public final class SyntheticTasks {
    /** The characters prompts and answers use (the demo tokenizer gives each its own id). */
    public static final String LETTERS = "abcdefghijklmnopqrstuvwxyz";

    /** A task: its operation word and what it does to the letters. */
    public enum Task {
        REVERSE("reverse"), SORT("sort"), SHIFT("next"), COPY("copy");

        private final String word;

        Task(String word) { this.word = word; }

        public String word() { return word; }

        public String apply(String letters) {
            return switch (this) {
                case REVERSE -> new StringBuilder(letters).reverse().toString();
                case SORT -> letters.chars().sorted().collect(StringBuilder::new, StringBuilder::appendCodePoint, StringBuilder::append).toString();
                case SHIFT -> letters.chars().map(c -> LETTERS.charAt((LETTERS.indexOf(c) + 1) % LETTERS.length()))
                        .collect(StringBuilder::new, StringBuilder::appendCodePoint, StringBuilder::append).toString();
                case COPY -> letters;
            };
        }

        public static Task parse(String s) {
            for (Task t : values()) if (t.name().equalsIgnoreCase(s) || t.word.equals(s)) return t;
            throw new IllegalArgumentException("unknown task '" + s + "' (reverse, sort, next, copy)");
        }
    }

    /** One question and its only correct answer; {@code prompt} is the user message. */
    public record Example(String prompt, String answer) {}

    private SyntheticTasks() {}

    /**
     * {@code count} distinct examples of {@code task} with {@code minLen..maxLen} distinct letters each, none of
     * whose letter strings is in {@code exclude}; the strings used are added to {@code exclude}, so a held-out set
     * drawn first and then excluded never leaks into training. Distinct letters keep "sort" free of ties.
     */
    public static List<Example> generate(Task task, int count, int minLen, int maxLen, SplittableRandom random, Set<String> exclude) {
        if (minLen < 1 || maxLen < minLen || maxLen > LETTERS.length())
            throw new IllegalArgumentException("letter counts must satisfy 1 <= min <= max <= " + LETTERS.length());
        List<Example> out = new ArrayList<>(count);
        int attempts = 0;
        while (out.size() < count) {
            if (++attempts > 100 * count + 1000)
                throw new IllegalArgumentException("cannot draw " + count + " distinct " + task.word + " examples of length " + minLen + ".." + maxLen);
            int len = minLen + random.nextInt(maxLen - minLen + 1);
            String letters = distinctLetters(len, random);
            if (!exclude.add(task.word + " " + letters)) continue;
            out.add(new Example(task.word + " " + letters, task.apply(letters)));
        }
        return out;
    }

    /** Convenience for a fresh exclusion set. */
    public static Set<String> newExclusions() { return new HashSet<>(); }

    private static String distinctLetters(int len, SplittableRandom random) {
        char[] pool = LETTERS.toCharArray();
        // Partial Fisher-Yates: the first len entries become a uniform draw without replacement.
        for (int i = 0; i < len; i++) {
            int j = i + random.nextInt(pool.length - i);
            char t = pool[i];
            pool[i] = pool[j];
            pool[j] = t;
        }
        return new String(pool, 0, len);
    }

    /**
     * Writes chat JSONL ({"messages": [user, assistant]}), which the data pipeline renders with its default
     * template and trains on the answer only; the prompt is masked, as in instruction tuning.
     */
    public static void writeChatJsonl(Path file, List<Example> examples) throws IOException {
        StringBuilder sb = new StringBuilder();
        for (Example e : examples) {
            Map<String, Object> user = new LinkedHashMap<>(), assistant = new LinkedHashMap<>();
            user.put("role", "user");
            user.put("content", e.prompt());
            assistant.put("role", "assistant");
            assistant.put("content", e.answer());
            sb.append(Json.writeCompact(Map.of("messages", List.of(user, assistant)))).append('\n');
        }
        AtomicFiles.writeString(file, sb.toString());
    }

    /**
     * The text the model sees before its answer: exactly what the default chat template renders for one user
     * turn plus the assistant header (dev.llamafit.io.data.ChatTemplate.Default), so evaluation prompts match training.
     */
    public static String chatPrompt(String userMessage) {
        return "<|user|>\n" + userMessage + "\n<|assistant|>\n";
    }
}
