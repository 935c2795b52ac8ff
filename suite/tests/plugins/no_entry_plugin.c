// A shared library that is not a maskcheck plugin: it exports no maskcheck_plugin_v1.
__attribute__((visibility("default"))) int not_a_plugin(void);
int not_a_plugin(void) {
  return 42;
}
