// Runs a declarative Jenkinsfile under a small stand-in of Jenkins' DSL and
// prints what a build would do, one line per step:
//   stage NAME | sh CMD | echo TEXT | credentials ID=VAR,... | env NAME=VALUE
// Usage: groovy declarative.groovy JENKINSFILE KEY=VALUE...   (the job's env)
// Only the parts of the DSL the Jenkinsfile uses are modelled; anything
// else fails loudly (MissingMethodException), so the test notices.

def file = new File(args[0])
def jobEnv = [:]
args.drop(1).each { kv -> def (k, v) = kv.split('=', 2); jobEnv[k] = v }

class Dsl extends Script {
    Map env = [:]
    List out = []

    def run() {}
    def emit(String line) { out << line }

    def pipeline(Closure body) { with(body) }
    def agent(Object any) {}
    def getAny() { 'any' }
    def options(Closure body) { with(body) }
    def timestamps() {}
    def disableConcurrentBuilds() {}
    def environment(Closure body) {
        def values = [:]
        body.resolveStrategy = Closure.DELEGATE_FIRST
        body.delegate = values
        body()
        values.each { k, v -> env[k] = v; emit("env ${k}=${v}") }
    }
    def stages(Closure body) { with(body) }
    def stage(String name, Closure body) { emit("stage ${name}"); with(body) }
    def steps(Closure body) { with(body) }
    def when(Closure body) { throw new IllegalStateException('when{} is not modelled: guard inside steps') }
    def script(Closure body) { with(body) }
    def sh(String command) { emit("sh ${command}") }
    def echo(Object text) { emit("echo ${text}") }
    def usernamePassword(Map m) { "${m.credentialsId}=${m.usernameVariable}+${m.passwordVariable}" }
    def sshUserPrivateKey(Map m) { "${m.credentialsId}=${m.keyFileVariable}" }
    def withCredentials(List bindings, Closure body) {
        emit("credentials ${bindings.join(',')}")
        with(body)
    }
}

def shell = new GroovyShell(this.class.classLoader, new Binding(),
    new org.codehaus.groovy.control.CompilerConfiguration(scriptBaseClass: Dsl.name))
def jenkinsfile = shell.parse(file)
jenkinsfile.env.putAll(jobEnv)
jenkinsfile.run()
jenkinsfile.out.each { println it }
