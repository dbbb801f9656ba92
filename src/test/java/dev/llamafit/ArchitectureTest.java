// DESIGN §2 as rules on the compiled classes: the layer order, the engine's independence of plan.pytorch, io's limits, no cycles.
package dev.llamafit;

import static com.tngtech.archunit.lang.syntax.ArchRuleDefinition.classes;
import static com.tngtech.archunit.lang.syntax.ArchRuleDefinition.noClasses;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.util.List;

import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;

import com.tngtech.archunit.core.domain.Dependency;
import com.tngtech.archunit.core.domain.JavaClass;
import com.tngtech.archunit.core.domain.JavaClasses;
import com.tngtech.archunit.core.importer.ClassFileImporter;
import com.tngtech.archunit.core.importer.ImportOption;
import com.tngtech.archunit.lang.ArchCondition;
import com.tngtech.archunit.lang.ConditionEvents;
import com.tngtech.archunit.lang.SimpleConditionEvent;
import com.tngtech.archunit.library.dependencies.SliceAssignment;
import com.tngtech.archunit.library.dependencies.SliceIdentifier;
import com.tngtech.archunit.library.dependencies.SlicesRuleDefinition;

/**
 * The package graph of the main code. Packages are layers, lowest first; a class may use only its own layer and the
 * ones before it. A layer is the first package segment under {@code dev.llamafit}, except {@code plan.pytorch}, which
 * is a layer of its own above {@code plan}. A layer that does not exist yet holds no classes and so constrains nothing
 * until it appears.
 */
class ArchitectureTest {
    static final String ROOT = "dev.llamafit";
    static final List<String> ORDER = List.of("memory", "tensor", "kernels", "quant", "nn", "model", "io", "peft", "optim",
            "plan", "plan.pytorch", "dist", "train", "demo", "ui", "cli");
    /** The packages that train and run models; none of them may know about the PyTorch planner. */
    static final List<String> ENGINE = List.of("memory", "tensor", "kernels", "nn", "model", "peft", "optim", "io", "dist", "train");

    static JavaClasses main;

    @BeforeAll
    static void importMainClasses() {
        // ArchUnit's own "no tests" option knows target/test-classes only; builds here may go to -Dllamafit.buildDir.
        ImportOption mainOnly = location -> !location.contains("/test-classes/");
        main = new ClassFileImporter().withImportOption(mainOnly).importPackages(ROOT);
        assertTrue(main.size() > 50, "imported only " + main.size() + " classes: is the build folder where the test looks?");
    }

    /** The layer of a class in dev.llamafit: "plan.pytorch" or the first package segment ("io" for io.data too). */
    static String layerOf(JavaClass c) {
        String pkg = c.getPackageName();
        if (!pkg.startsWith(ROOT + ".")) return null;
        String rest = pkg.substring(ROOT.length() + 1);
        if (rest.equals("plan.pytorch") || rest.startsWith("plan.pytorch.")) return "plan.pytorch";
        int dot = rest.indexOf('.');
        return dot < 0 ? rest : rest.substring(0, dot);
    }

    static String[] packages(List<String> layers) {
        return layers.stream().map(l -> ROOT + "." + l + "..").toArray(String[]::new);
    }

    @Test
    void everyPackageIsALayerAndUsesOnlyTheLayersBeforeIt() {
        ArchCondition<JavaClass> downward = new ArchCondition<>("use only their own layer and the layers before it in " + ORDER) {
            @Override
            public void check(JavaClass c, ConditionEvents events) {
                String own = layerOf(c);
                if (own == null || !ORDER.contains(own)) {
                    events.add(SimpleConditionEvent.violated(c, c.getName() + " is in layer " + own + ", which the architecture does not list"));
                    return;
                }
                for (Dependency d : c.getDirectDependenciesFromSelf()) {
                    String used = layerOf(d.getTargetClass());
                    if (used != null && ORDER.indexOf(used) > ORDER.indexOf(own))
                        events.add(SimpleConditionEvent.violated(d, own + " -> " + used + ": " + d.getDescription()));
                }
            }
        };
        classes().that().resideInAPackage(ROOT + "..").should(downward).check(main);
    }

    @Test
    void noEnginePackageUsesThePytorchPlanner() {
        noClasses().that().resideInAnyPackage(packages(ENGINE))
                .should().dependOnClassesThat().resideInAPackage(ROOT + ".plan.pytorch..")
                .check(main);
    }

    @Test
    void ioKnowsNothingOfPlansAdaptersOrTraining() {
        noClasses().that().resideInAPackage(ROOT + ".io..")
                .should().dependOnClassesThat().resideInAnyPackage(packages(List.of("plan", "peft", "train")))
                .check(main);
    }

    /**
     * Slices are the layers: io's sub-packages (data, safetensors, tokenizer) fold into io, because io's root holds what
     * they all share (InputException, Json, AtomicFiles) while its facades (ModelFolder) use them, so io and its
     * sub-packages are one module by design; plan.pytorch is its own slice because it is its own layer.
     */
    @Test
    void layersAreFreeOfCycles() {
        SliceAssignment byLayer = new SliceAssignment() {
            @Override
            public SliceIdentifier getIdentifierOf(JavaClass c) {
                String layer = layerOf(c);
                return layer == null ? SliceIdentifier.ignore() : SliceIdentifier.of(layer);
            }

            @Override
            public String getDescription() { return "llamafit layers"; }
        };
        SlicesRuleDefinition.slices().assignedFrom(byLayer).should().beFreeOfCycles().check(main);
    }
}
